"""Loading the real model: ``Qwen/Qwen-Image-Edit-2509`` (or ``…-2511``, or a local directory
made by ``save_pretrained``) with diffusers ``from_pretrained``."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import QwenImageEditPlusPipeline

from qwenedit.config import Settings
from qwenedit.engines.qwen_options import (
    apply_compile,
    apply_lightning,
    apply_placement,
    apply_vae_tiling,
)
from qwenedit.engines.vl_processor import ImageOnlyQwenProcessor
from qwenedit.errors import ConfigError

log = logging.getLogger(__name__)

DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
}


def resolve_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ConfigError(f"QWENEDIT_DTYPE={name!r}: use one of {', '.join(DTYPES)}") from None


def check_qwen_available(settings: Settings) -> None:
    """The cheap checks, before anything is loaded: a usable device, dtype and diffusers."""
    resolve_dtype(settings.dtype)
    check_diffusers_version(settings.model)
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "The qwen engine needs a CUDA GPU and none was found. Run with --engine tiny for "
            "the CPU test engine (the real pipeline with tiny random weights), --engine remote "
            "to use a model server elsewhere, or --device cpu to try the real model on the CPU."
        )


def check_diffusers_version(model: str) -> None:
    """QwenImageEditPlusPipeline came in diffusers 0.36; Edit-2511 needs 0.37 or newer."""
    import diffusers
    from packaging.version import Version

    needed = "0.37.0" if "2511" in model else "0.36.0"
    if Version(diffusers.__version__) < Version(needed):
        raise ConfigError(
            f"{model} needs diffusers {needed} or newer; this is {diffusers.__version__}"
        )


def _processor_source(model: str) -> str:
    local = Path(model)
    return str(local / "processor") if local.is_dir() else model


def load_qwen_pipeline(settings: Settings) -> QwenImageEditPlusPipeline:
    check_qwen_available(settings)
    dtype = resolve_dtype(settings.dtype)
    model = settings.model
    log.info("loading %s (%s) on %s", model, settings.dtype, settings.device)
    try:
        source = _processor_source(model)
        extra = {} if Path(model).is_dir() else {"subfolder": "processor"}
        processor = ImageOnlyQwenProcessor.from_pretrained(source, **extra)
        pipeline = QwenImageEditPlusPipeline.from_pretrained(
            model, processor=processor, dtype=dtype
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot load the model {model!r}: {exc}") from exc
    pipeline.set_progress_bar_config(disable=True)
    if settings.fast:
        apply_lightning(pipeline, model=model, steps=settings.fast, lora=settings.lightning_lora)
    apply_placement(pipeline, offload=settings.offload, device=settings.device)
    if settings.vae_tiling:
        apply_vae_tiling(pipeline)
    if settings.compile:
        apply_compile(pipeline)
    return pipeline


def qwen_steps_and_cfg(settings: Settings) -> tuple[int, float]:
    """Lightning runs its own step count with CFG off; otherwise the configured values."""
    if settings.fast:
        return settings.fast, 1.0
    return settings.steps, settings.true_cfg_scale
