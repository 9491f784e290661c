"""Engine names to engines. Imports torch and diffusers only when an engine is loaded or
checked: the API-only server and the admin commands never import them."""

from __future__ import annotations

import importlib
import logging

from qwenedit.config import Settings
from qwenedit.engines.base import Engine
from qwenedit.errors import ConfigError

log = logging.getLogger(__name__)

BUILT_IN = ("qwen", "tiny", "remote")


def check_engine_available(settings: Settings) -> None:
    """Fast checks that the configured engine can start here; ``ConfigError`` says why not."""
    name = settings.engine
    if name == "qwen":
        from qwenedit.engines.qwen import check_qwen_available

        check_qwen_available(settings)
    elif name == "remote":
        if not settings.remote_url:
            raise ConfigError("--engine remote needs QWENEDIT_REMOTE_URL (the server's base URL)")
    elif name != "tiny" and ":" not in name:
        raise ConfigError(
            f"unknown engine {name!r}: use one of {', '.join(BUILT_IN)}, or module:Class"
        )


def load_engine(settings: Settings) -> Engine:
    check_engine_available(settings)
    name = settings.engine
    if name == "remote":
        return _remote(settings)
    if ":" in name:
        return _custom(name, settings)
    import torch

    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    from qwenedit.engines.diffusers_engine import DiffusersEngine

    if name == "tiny":
        from qwenedit.engines.tiny import build_tiny_pipeline

        return DiffusersEngine(
            build_tiny_pipeline(),
            name="tiny",
            steps=settings.steps,
            true_cfg_scale=settings.true_cfg_scale,
            max_batch=settings.max_batch,
            render_size=settings.tiny_render_size,
        )
    from qwenedit.engines.qwen import load_qwen_pipeline, qwen_steps_and_cfg

    steps, true_cfg_scale = qwen_steps_and_cfg(settings)
    engine = DiffusersEngine(
        load_qwen_pipeline(settings),
        name="qwen",
        steps=steps,
        true_cfg_scale=true_cfg_scale,
        max_batch=settings.max_batch,
        extends_prompts=True,
    )
    if settings.warmup:
        engine.warm_up()
    return engine


def _remote(settings: Settings) -> Engine:
    from qwenedit.engines.remote import RemoteEngine

    assert settings.remote_url is not None
    key = settings.remote_api_key
    return RemoteEngine(
        settings.remote_url,
        dialect=settings.remote_dialect,
        model=settings.remote_model,
        api_key=key.get_secret_value() if key else None,
        steps=settings.steps,
        true_cfg_scale=settings.true_cfg_scale,
        timeout=settings.remote_timeout,
    )


def _custom(spec: str, settings: Settings) -> Engine:
    """``--engine package.module:Class``: the class is called with the settings and must
    implement the Engine protocol (``name``, ``edit``, ``close``)."""
    module_name, _, class_name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--engine {spec}: cannot import it ({exc})") from exc
    engine = factory(settings)
    if not all(hasattr(engine, attribute) for attribute in ("name", "edit", "close")):
        raise ConfigError(f"--engine {spec}: {class_name} is not an Engine (name, edit, close)")
    log.info("loaded custom engine %s", spec)
    engine_checked: Engine = engine
    return engine_checked
