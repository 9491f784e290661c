"""Prompt extension with the pipeline's own Qwen2.5-VL: the text encoder of Qwen-Image-Edit is
the full vision-language model with its LM head, so it can write the rewrite itself, seeing the
input images, with no second model in memory (DESIGN §7)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from qwenedit.domain.rewrite import REWRITE_INSTRUCTION, parse_rewrite

log = logging.getLogger(__name__)

MAX_NEW_TOKENS = 300
PICTURE = "Picture {}: <|vision_start|><|image_pad|><|vision_end|>"


def chat_text(prompt: str, count: int) -> str:
    """The Qwen chat template, written out: system instruction, pictures, instruction."""
    pictures = "".join(PICTURE.format(index) for index in range(1, count + 1))
    return (
        f"<|im_start|>system\n{REWRITE_INSTRUCTION}<|im_end|>\n"
        f"<|im_start|>user\n{pictures}Edit instruction: {prompt}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


class LocalVlmExtender:
    name = "local"

    def __init__(
        self,
        pipeline: Any,
        lock: threading.Lock,
        prepare_images: Callable[[list[Image.Image]], list[Image.Image]],
    ) -> None:
        self._pipeline = pipeline
        self._lock = lock
        self._prepare_images = prepare_images

    def extend(self, prompt: str, images: Sequence[Image.Image]) -> str | None:
        """Greedy decoding under the engine's lock (the pipeline never runs two calls)."""
        with self._lock:
            try:
                answer = self._generate(prompt, list(images))
            except Exception as exc:  # any model failure means: go on with the original prompt
                log.warning("local prompt extension failed: %s", type(exc).__name__)
                return None
        rewritten = parse_rewrite(answer, prompt)
        if rewritten is None:
            log.info("local prompt extension: the answer was not a usable rewrite")
        return rewritten

    def _generate(self, prompt: str, images: list[Image.Image]) -> str:
        encoder = self._pipeline.text_encoder
        processor = self._pipeline.processor
        inputs = processor(
            text=[chat_text(prompt, len(images))],
            images=self._prepare_images(images),
            padding=True,
            return_tensors="pt",
        ).to(encoder.device)
        with torch.inference_mode():
            generated = encoder.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        new_tokens = generated[0, inputs["input_ids"].shape[1] :]
        text: str = processor.tokenizer.decode(new_tokens, skip_special_tokens=True)
        return text

    def close(self) -> None:
        return None
