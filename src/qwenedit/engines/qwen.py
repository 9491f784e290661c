"""Loading the real model: ``Qwen/Qwen-Image-Edit-2509`` (or ``…-2511``, or a local directory
made by ``save_pretrained``) with diffusers ``from_pretrained``."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import QwenImageEditPlusPipeline

from qwenedit.config import Settings
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
    """The cheap checks, before anything is loaded: a usable device and dtype."""
    resolve_dtype(settings.dtype)
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "The qwen engine needs a CUDA GPU and none was found. Run with --engine tiny for "
            "the CPU test engine (the real pipeline with tiny random weights), --engine remote "
            "to use a model server elsewhere, or --device cpu to try the real model on the CPU."
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
    pipeline.to(settings.device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
