"""An Engine over a diffusers ``QwenImageEditPlusPipeline`` (the real model or the tiny one).

One lock per pipeline: the pipeline keeps per-call state on itself, so it never runs two calls
at once. The prompt (and the negative prompt) is encoded once per edit and reused for every
micro-batch; each image gets its own generator seeded ``seed + i``, so an image does not depend
on how n was split into batches (DESIGN §8)."""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from typing import Any

import torch
from diffusers import QwenImageEditPlusPipeline
from PIL import Image
from tokenizers import Tokenizer

from qwenedit.domain.prompt_fit import safe_prompt_tokens
from qwenedit.domain.task import ErrorCode
from qwenedit.engines.base import EditJob, EditOutput, StepCallback
from qwenedit.errors import TaskFailure, WorkerStopping
from qwenedit.extend.local_vlm import LocalVlmExtender

log = logging.getLogger(__name__)

DEFAULT_NEGATIVE_PROMPT = " "
"""CFG only runs with a negative prompt; a single space is the model card's recommendation."""
RENDER_MULTIPLE = 16


def render_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """The size a small-render engine draws at: the job's aspect ratio, longest side about
    ``longest``, both sides multiples of 16 (what the pipeline accepts)."""
    scale = longest / max(width, height)
    return (
        max(RENDER_MULTIPLE, round(width * scale / RENDER_MULTIPLE) * RENDER_MULTIPLE),
        max(RENDER_MULTIPLE, round(height * scale / RENDER_MULTIPLE) * RENDER_MULTIPLE),
    )


class DiffusersEngine:
    def __init__(
        self,
        pipeline: QwenImageEditPlusPipeline,
        *,
        name: str,
        steps: int,
        true_cfg_scale: float,
        max_batch: int,
        render_size: int | None = None,
        extends_prompts: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.name = name
        self._steps = steps
        self._true_cfg_scale = true_cfg_scale
        self._max_batch = max_batch
        self._render_size = render_size
        self._extends_prompts = extends_prompts
        self._lock = threading.Lock()
        backend = getattr(getattr(pipeline, "tokenizer", None), "backend_tokenizer", None)
        self._counting: Tokenizer | None = (
            None if backend is None else Tokenizer.from_str(backend.to_str())
        )
        """A copy of the pipeline's tokenizer, so counting never touches the one in use."""

    def count_prompt_tokens(self, prompt: str) -> int:
        """Tokens of the pipeline's chat template around ``prompt``, less those it drops: the
        text sequence the pipeline builds, without the images' lines."""
        if self._counting is None:
            return safe_prompt_tokens(prompt)
        text = self.pipeline.prompt_template_encode.format(prompt)
        dropped: int = self.pipeline.prompt_template_encode_start_idx
        return len(self._counting.encode(text).ids) - dropped

    def local_prompt_extender(self) -> LocalVlmExtender | None:
        """The pipeline's own Qwen2.5-VL as prompt rewriter, for engines whose VLM is real
        (not the tiny engine's random one)."""
        if not self._extends_prompts:
            return None
        return LocalVlmExtender(self.pipeline, self._lock, self._vlm_images)

    def warm_up(self) -> None:
        """One edit at the usual size before serving: CUDA kernels, allocator pools and a
        compiled transformer are ready when the first user request arrives."""
        started = time.perf_counter()
        image = Image.new("RGB", (1024, 1024), (128, 128, 128))
        warm = EditJob(
            prompt="warm up",
            images=(image,),
            n=1,
            width=1024,
            height=1024,
            negative_prompt=None,
            seed=0,
        )
        self.edit(warm, lambda done, total: None)
        log.info("engine %s warmed up in %.1fs", self.name, time.perf_counter() - started)

    def edit(self, job: EditJob, on_step: StepCallback) -> EditOutput:
        with self._lock:
            try:
                return self._edit(job, on_step)
            except (TaskFailure, WorkerStopping):
                raise
            except Exception as exc:
                raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> TaskFailure:
        """The DESIGN §8 code for an engine error: out of memory, a rejected job, or a fault."""
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
            return TaskFailure(ErrorCode.RESOURCE_EXHAUSTED, "The GPU ran out of memory")
        if isinstance(exc, ValueError):
            return TaskFailure(ErrorCode.INVALID_PARAMETERS, str(exc))
        log.error("engine %s failed", self.name, exc_info=exc)
        return TaskFailure(ErrorCode.SERVICE_ERROR, f"The engine failed: {type(exc).__name__}")

    def _edit(self, job: EditJob, on_step: StepCallback) -> EditOutput:
        started = time.perf_counter()
        images = list(job.images)
        negative = job.negative_prompt or DEFAULT_NEGATIVE_PROMPT
        vlm_images = self._vlm_images(images)
        with torch.inference_mode():
            prompt = self._encode(job.prompt, vlm_images)
            negative_embeds: tuple[Any, Any] = (None, None)
            if self._true_cfg_scale > 1:
                negative_embeds = self._encode(negative, vlm_images)
        width, height = self._draw_size(job)
        batches = math.ceil(job.n / self._max_batch)
        total = batches * self._steps
        produced: list[Image.Image] = []
        for batch in range(batches):
            count = min(self._max_batch, job.n - len(produced))
            first = len(produced)
            generators = [
                torch.Generator(device="cpu").manual_seed(job.seed + first + i)
                for i in range(count)
            ]
            done_before = batch * self._steps

            def step_end(
                pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any], base: int = done_before
            ) -> dict[str, Any]:
                on_step(base + step + 1, total)
                return kwargs

            with torch.inference_mode():
                result = self.pipeline(
                    image=images,
                    prompt_embeds=prompt[0],
                    prompt_embeds_mask=prompt[1],
                    negative_prompt_embeds=negative_embeds[0],
                    negative_prompt_embeds_mask=negative_embeds[1],
                    true_cfg_scale=self._true_cfg_scale,
                    height=height,
                    width=width,
                    num_inference_steps=self._steps,
                    num_images_per_prompt=count,
                    generator=generators,
                    output_type="pil",
                    callback_on_step_end=step_end,
                )
            produced.extend(self._exact(image, job) for image in result.images)
        return EditOutput(images=tuple(produced), pipeline_seconds=time.perf_counter() - started)

    def _encode(self, text: str, vlm_images: list[Image.Image]) -> tuple[Any, Any]:
        """Embeddings and their mask; the pipeline drops an all-ones mask, which is put back
        so that passing the embeddings in does not log a warning on every call."""
        embeds, mask = self.pipeline.encode_prompt(prompt=text, image=vlm_images)
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        return embeds, mask

    def _vlm_images(self, images: list[Image.Image]) -> list[Image.Image]:
        """The images as the pipeline gives them to its VLM when it encodes the prompt itself
        (resized to the condition size), so encoding once here changes nothing."""
        from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as module

        resized = []
        for image in images:
            width, height = module.calculate_dimensions(
                module.CONDITION_IMAGE_SIZE, image.width / image.height
            )
            resized.append(self.pipeline.image_processor.resize(image, height, width))
        return resized

    def _draw_size(self, job: EditJob) -> tuple[int, int]:
        if self._render_size is None:
            return job.width, job.height
        return render_size(job.width, job.height, self._render_size)

    @staticmethod
    def _exact(image: Image.Image, job: EditJob) -> Image.Image:
        image = image.convert("RGB")
        if image.size != (job.width, job.height):
            image = image.resize((job.width, job.height), Image.Resampling.LANCZOS)
        return image

    def close(self) -> None:
        del self.pipeline
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
