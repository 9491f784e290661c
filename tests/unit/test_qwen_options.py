"""The real model's options exercised on the tiny pipeline: Lightning with a LoRA file made
here, offload modes and VAE tiling through the qwen loader, and the local-VLM prompt rewriter."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from qwenedit.config import Settings
from qwenedit.engines.base import EditJob
from qwenedit.engines.diffusers_engine import DiffusersEngine
from qwenedit.engines.qwen import load_qwen_pipeline, qwen_steps_and_cfg
from qwenedit.engines.qwen_options import LIGHTNING_REPOSITORY, lightning_source
from qwenedit.engines.tiny import build_tiny_pipeline
from qwenedit.errors import ConfigError

JOB = EditJob(
    prompt="make it green",
    images=(Image.new("RGB", (512, 384), (200, 40, 40)),),
    n=1,
    width=96,
    height=64,
    negative_prompt=None,
    seed=11,
)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-model")
    pipeline = build_tiny_pipeline()
    pipeline.save_pretrained(directory)
    pipeline.processor.save_pretrained(directory / "processor")
    return directory


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA for the tiny transformer's attention projections, in diffusers' key format."""
    generator = torch.Generator().manual_seed(5)
    weights = {}
    for block in range(2):
        for projection in ("to_q", "to_k", "to_v"):
            prefix = f"transformer.transformer_blocks.{block}.attn.{projection}"
            weights[f"{prefix}.lora_A.weight"] = torch.randn(2, 48, generator=generator)
            weights[f"{prefix}.lora_B.weight"] = torch.randn(48, 2, generator=generator)
    path = tmp_path_factory.mktemp("lora") / "tiny-lightning-8steps.safetensors"
    save_file(weights, str(path))
    return path


def run(settings: Settings) -> bytes:
    steps, cfg = qwen_steps_and_cfg(settings)
    engine = DiffusersEngine(
        load_qwen_pipeline(settings),
        name="qwen",
        steps=steps,
        true_cfg_scale=cfg,
        max_batch=6,
        render_size=64,
    )
    seen: list[tuple[int, int]] = []
    image = engine.edit(JOB, lambda done, total: seen.append((done, total))).images[0]
    assert seen[-1] == (steps, steps)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def cpu_settings(model: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {"model": str(model), "device": "cpu", "dtype": "float32", "steps": 2}
    return Settings(**{**values, **extra})


@pytest.mark.slow
def test_lightning_loads_the_lora_switches_scheduler_and_steps(
    saved_model: Path, lora_file: Path
) -> None:
    settings = cpu_settings(saved_model, fast=8, lightning_lora=str(lora_file))
    assert qwen_steps_and_cfg(settings) == (8, 1.0)
    pipeline = load_qwen_pipeline(settings)
    assert pipeline.scheduler.config.time_shift_type == "exponential"
    plain = load_qwen_pipeline(cpu_settings(saved_model))
    fused = pipeline.transformer.transformer_blocks[0].attn.to_q.weight
    original = plain.transformer.transformer_blocks[0].attn.to_q.weight
    assert not torch.allclose(fused, original)
    assert run(settings) != run(cpu_settings(saved_model, steps=8, true_cfg_scale=1.0))


def test_lightning_defaults_to_the_models_file() -> None:
    assert lightning_source("Qwen/Qwen-Image-Edit-2509", 8, None) == (
        LIGHTNING_REPOSITORY,
        "Qwen-Image-Edit-2509/Qwen-Image-Edit-2509-Lightning-8steps-V1.0-bf16.safetensors",
    )
    repository, weights = lightning_source("Qwen/Qwen-Image-Edit-2511", 4, None)
    assert repository == LIGHTNING_REPOSITORY
    assert weights is not None and weights.startswith("Qwen-Image-Edit-2511/")


def test_a_missing_lora_is_a_config_error(saved_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Lightning LoRA"):
        load_qwen_pipeline(cpu_settings(saved_model, fast=4, lightning_lora=str(tmp_path / "x")))


@pytest.mark.slow
@pytest.mark.parametrize("offload", ["group", "model"])
def test_offload_modes_give_the_same_images(saved_model: Path, offload: str) -> None:
    """``sequential`` is left out: with accelerate 1.15 and torch 2.13 its CPU-to-"device" hook
    fails when the device is the CPU itself (TypeError in ``set_module_tensor_to_device``); it
    is only meant for a GPU, which this machine lacks."""
    assert run(cpu_settings(saved_model, offload=offload)) == run(cpu_settings(saved_model))


def test_vae_tiling_is_applied(saved_model: Path) -> None:
    pipeline = load_qwen_pipeline(cpu_settings(saved_model, vae_tiling=True))
    assert pipeline.vae.use_tiling


@pytest.mark.slow
def test_local_vlm_extender_runs_the_text_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = build_tiny_pipeline()
    engine = DiffusersEngine(
        pipeline,
        name="tiny",
        steps=2,
        true_cfg_scale=4.0,
        max_batch=6,
        render_size=64,
        extends_prompts=True,
    )
    extender = engine.local_prompt_extender()
    assert extender is not None
    calls: list[int] = []
    real_generate = pipeline.text_encoder.generate

    def generate(**kwargs: Any) -> Any:
        calls.append(int(kwargs["input_ids"].shape[1]))
        return real_generate(**kwargs)

    monkeypatch.setattr(pipeline.text_encoder, "generate", generate)
    assert extender.extend("make it blue", list(JOB.images)) is None  # random weights: garbage
    assert calls and calls[0] > 20
    monkeypatch.setattr(
        pipeline.processor.tokenizer,
        "decode",
        lambda *args, **kwargs: '{"Rewritten": "Paint the wall in Picture 1 blue."}',
    )
    assert extender.extend("make it blue", list(JOB.images)) == "Paint the wall in Picture 1 blue."
    tiny = DiffusersEngine(pipeline, name="tiny", steps=2, true_cfg_scale=4.0, max_batch=6)
    assert tiny.local_prompt_extender() is None
