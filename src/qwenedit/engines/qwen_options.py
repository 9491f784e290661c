"""The real model's speed and memory options (``serve``/``worker`` flags and settings):
Lightning LoRA (``--fast 8|4``), offload (``none``, ``model``, ``group``, ``sequential``), VAE
tiling and ``torch.compile`` of the transformer. Each applies to a loaded pipeline."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageEditPlusPipeline

from qwenedit.errors import ConfigError

log = logging.getLogger(__name__)

LIGHTNING_REPOSITORY = "lightx2v/Qwen-Image-Lightning"
LIGHTNING_FILE = "Qwen-Image-Edit-{version}/Qwen-Image-Edit-{version}-Lightning-{steps}steps-V1.0-bf16.safetensors"  # noqa: E501
"""The LoRA file per model version in the Lightning repository (override: ``LIGHTNING_LORA``)."""

LIGHTNING_SCHEDULER: dict[str, Any] = {
    "base_image_seq_len": 256,
    "base_shift": math.log(3),
    "invert_sigmas": False,
    "max_image_seq_len": 8192,
    "max_shift": math.log(3),
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": None,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}
"""The scheduler the Lightning distillation was trained with (exponential time shift), as the
Qwen-Image-Lightning model card gives it."""

OFFLOAD_MODES = ("none", "model", "group", "sequential")


def lightning_source(model: str, steps: int, lora: str | None) -> tuple[str, str | None]:
    """Where the Lightning LoRA comes from: ``(repository or file, weight name or None)``."""
    if lora is not None:
        path = Path(lora)
        if path.is_file():
            return str(path.parent), path.name
        return lora, None
    version = "2511" if "2511" in model else "2509"
    return LIGHTNING_REPOSITORY, LIGHTNING_FILE.format(version=version, steps=steps)


def apply_lightning(
    pipeline: QwenImageEditPlusPipeline, *, model: str, steps: int, lora: str | None
) -> None:
    """Fuse the distilled LoRA into the transformer and switch to its scheduler; the caller runs
    ``steps`` steps with CFG off (``true_cfg_scale`` 1)."""
    if steps not in (4, 8):
        raise ConfigError(f"--fast takes 4 or 8 (steps), not {steps}")
    source, weight_name = lightning_source(model, steps, lora)
    log.info("loading the Lightning LoRA %s %s", source, weight_name or "")
    try:
        pipeline.load_lora_weights(source, weight_name=weight_name, adapter_name="lightning")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot load the Lightning LoRA {source} {weight_name}: {exc}") from exc
    pipeline.fuse_lora(adapter_names=["lightning"])
    pipeline.unload_lora_weights()
    pipeline.scheduler = FlowMatchEulerDiscreteScheduler.from_config(LIGHTNING_SCHEDULER)


def apply_placement(pipeline: QwenImageEditPlusPipeline, *, offload: str, device: str) -> None:
    """Put the pipeline on ``device`` whole, or offload it to CPU memory by ``offload`` mode."""
    if offload == "none":
        pipeline.to(device)
    elif offload == "model":
        pipeline.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipeline.enable_sequential_cpu_offload(device=device)
    elif offload == "group":
        streams = torch.device(device).type == "cuda"
        pipeline.enable_group_offload(
            onload_device=torch.device(device),
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=streams,
            non_blocking=streams,
        )
    else:
        raise ConfigError(f"--offload takes one of {', '.join(OFFLOAD_MODES)}, not {offload!r}")


def apply_vae_tiling(pipeline: QwenImageEditPlusPipeline) -> None:
    pipeline.vae.enable_tiling()


def apply_compile(pipeline: QwenImageEditPlusPipeline) -> None:
    """Compile the transformer's blocks (regional compilation: the repeated block is compiled
    once, so start-up stays short); the first call after this is the slow one, which is why
    the engine warms up at start."""
    pipeline.transformer.compile_repeated_blocks(fullgraph=True)
