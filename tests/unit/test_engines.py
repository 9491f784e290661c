"""The tiny engine runs the real QwenImageEditPlusPipeline; these tests pin what the worker
relies on: exact sizes, n, determinism, batching independence, steps, cancellation, one prompt
encoding per edit, and that the real loader loads a saved pipeline."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from qwenedit.config import Settings
from qwenedit.engines.base import EditJob
from qwenedit.errors import ConfigError, TaskCancelled

if TYPE_CHECKING:
    from qwenedit.engines.diffusers_engine import DiffusersEngine


@pytest.fixture(scope="module")
def engine() -> Iterator[DiffusersEngine]:
    from qwenedit.engines.diffusers_engine import DiffusersEngine
    from qwenedit.engines.registry import load_engine

    loaded = load_engine(Settings(engine="tiny", steps=2, true_cfg_scale=4.0, max_batch=6))
    assert isinstance(loaded, DiffusersEngine)
    yield loaded
    loaded.close()


def job(n: int = 1, width: int = 100, height: int = 80, seed: int = 3, **extra: Any) -> EditJob:
    inputs = (Image.new("RGB", (512, 384), (200, 40, 40)), Image.new("RGB", (400, 400), "blue"))
    values: dict[str, Any] = {
        "prompt": "make it green",
        "images": inputs,
        "n": n,
        "width": width,
        "height": height,
        "negative_prompt": None,
        "seed": seed,
    }
    values.update(extra)
    return EditJob(**values)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def ignore(done: int, total: int) -> None:
    return None


@pytest.mark.parametrize(("width", "height"), [(100, 80), (1024, 1024), (512, 1536), (1552, 784)])
def test_outputs_have_exactly_the_asked_size(
    engine: DiffusersEngine, width: int, height: int
) -> None:
    output = engine.edit(job(width=width, height=height), ignore)
    assert [image.size for image in output.images] == [(width, height)]
    assert all(image.mode == "RGB" for image in output.images)
    assert output.pipeline_seconds > 0


@pytest.mark.slow
def test_n_images_and_determinism(engine: DiffusersEngine) -> None:
    first = engine.edit(job(n=3), ignore)
    again = engine.edit(job(n=3), ignore)
    other = engine.edit(job(n=3, seed=4), ignore)
    assert len(first.images) == 3
    assert [png(i) for i in first.images] == [png(i) for i in again.images]
    assert png(first.images[0]) != png(other.images[0])
    assert png(first.images[0]) != png(first.images[1])


@pytest.mark.slow
def test_images_do_not_depend_on_batching(engine: DiffusersEngine) -> None:
    from qwenedit.engines.diffusers_engine import DiffusersEngine

    whole = engine.edit(job(n=3), ignore)
    split = DiffusersEngine(
        engine.pipeline, name="tiny", steps=2, true_cfg_scale=4.0, max_batch=2, render_size=64
    ).edit(job(n=3), ignore)
    assert [png(i) for i in whole.images] == [png(i) for i in split.images]


def test_negative_prompt_changes_the_output(engine: DiffusersEngine) -> None:
    plain = engine.edit(job(), ignore)
    negative = engine.edit(job(negative_prompt="blurry, low quality"), ignore)
    assert png(plain.images[0]) != png(negative.images[0])


def test_steps_are_reported_up_to_the_total(engine: DiffusersEngine) -> None:
    from qwenedit.engines.diffusers_engine import DiffusersEngine

    steps: list[tuple[int, int]] = []
    batched = DiffusersEngine(
        engine.pipeline, name="tiny", steps=2, true_cfg_scale=4.0, max_batch=2, render_size=64
    )
    batched.edit(job(n=3), lambda done, total: steps.append((done, total)))
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancel_from_the_step_callback_stops_the_call(engine: DiffusersEngine) -> None:
    calls: list[int] = []

    def cancel(done: int, total: int) -> None:
        calls.append(done)
        raise TaskCancelled()

    with pytest.raises(TaskCancelled):
        engine.edit(job(n=2), cancel)
    assert calls == [1]
    assert len(engine.edit(job(), ignore).images) == 1  # the engine is usable afterwards


@pytest.mark.slow
def test_the_prompt_is_encoded_once_for_n_images(
    engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qwenedit.engines.diffusers_engine import DiffusersEngine

    encoded: list[str] = []
    real = engine.pipeline.encode_prompt

    def spy(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("prompt_embeds") is None:
            encoded.append(kwargs.get("prompt") or args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.pipeline, "encode_prompt", spy)
    small_batches = DiffusersEngine(
        engine.pipeline, name="tiny", steps=2, true_cfg_scale=4.0, max_batch=2, render_size=64
    )
    small_batches.edit(job(n=6), ignore)
    assert encoded == ["make it green", " "]


def test_bad_parameters_become_invalid_parameters(engine: DiffusersEngine) -> None:
    from qwenedit.errors import TaskFailure

    with pytest.raises(TaskFailure) as caught:
        engine.edit(job(images=()), ignore)
    assert caught.value.code in ("invalid_parameters", "service_error")


@pytest.mark.slow
def test_a_saved_pipeline_loads_through_the_qwen_loader(
    engine: DiffusersEngine, tmp_path: Path
) -> None:
    from qwenedit.engines.diffusers_engine import DiffusersEngine
    from qwenedit.engines.qwen import load_qwen_pipeline

    engine.pipeline.save_pretrained(tmp_path / "model")
    # diffusers saves only components of known libraries; the real repositories ship this folder
    engine.pipeline.processor.save_pretrained(tmp_path / "model" / "processor")
    settings = Settings(model=str(tmp_path / "model"), device="cpu", dtype="float32", steps=2)
    loaded = DiffusersEngine(
        load_qwen_pipeline(settings),
        name="qwen",
        steps=2,
        true_cfg_scale=4.0,
        max_batch=6,
        render_size=64,
    )
    assert [png(i) for i in loaded.edit(job(), ignore).images] == [
        png(i) for i in engine.edit(job(), ignore).images
    ]


def test_qwen_without_cuda_names_the_tiny_engine() -> None:
    from qwenedit.engines.registry import check_engine_available

    with pytest.raises(ConfigError, match="--engine tiny"):
        check_engine_available(Settings(engine="qwen", device="cuda"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"engine": "nonsense"}, "unknown engine"),
        ({"engine": "remote"}, "QWENEDIT_REMOTE_URL"),
        ({"engine": "qwen", "device": "cpu", "dtype": "int3"}, "QWENEDIT_DTYPE"),
        ({"engine": "qwen", "device": "cpu", "model": "/nonexistent/model"}, "Cannot load"),
    ],
)
def test_engine_configuration_errors(overrides: dict[str, Any], message: str) -> None:
    from qwenedit.engines.registry import load_engine

    with pytest.raises(ConfigError, match=message):
        load_engine(Settings(**overrides))


def test_a_custom_engine_loads_from_module_and_class() -> None:
    from qwenedit.engines.registry import load_engine

    loaded = load_engine(Settings(engine="support.engine:SettingsEngine"))
    assert loaded.name == "test"


@pytest.mark.slow
def test_the_registry_does_not_import_torch() -> None:
    modules = "qwenedit.engines.registry, qwenedit.cli, qwenedit.client"
    code = f"import sys, {modules}; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("prompt", ["make it green", "漢字" * 50 + "\U0001f600" * 10])
def test_prompt_tokens_are_counted_as_the_pipeline_encodes_them(engine: Any, prompt: str) -> None:
    embeds, _ = engine.pipeline.encode_prompt(prompt=prompt, image=None)
    assert engine.count_prompt_tokens(prompt) == embeds.shape[1]


def test_a_prompt_past_the_position_table_fails_in_the_model(engine: Any) -> None:
    """Why prompts are judged at create (``domain.prompt_fit``): the model cannot take them."""
    from qwenedit.domain.prompt_fit import ROPE_POSITIONS
    from qwenedit.errors import TaskFailure

    prompt = "漢" * 1400
    assert engine.count_prompt_tokens(prompt) > ROPE_POSITIONS
    with pytest.raises(TaskFailure):
        engine.edit(job(prompt=prompt), ignore)
