"""An image-only stand-in for transformers' ``Qwen2VLProcessor``.

The pipeline calls ``processor(text=..., images=..., padding=True, return_tensors="pt")`` and
reads ``input_ids``, ``attention_mask``, ``pixel_values`` and ``image_grid_thw``. The stock
processor cannot be built without torchvision in transformers 5 (its video processor is
type-checked, and the default image processor imports torchvision); the pipeline never sends
video, so this one pairs the tokenizer with the Pillow image processor and expands each
``<|image_pad|>`` into one token per merged patch, as the stock processor does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

IMAGE_TOKEN = "<|image_pad|>"  # noqa: S105 - a vocabulary token, not a secret


class ImageOnlyQwenProcessor:
    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, image_processor: Qwen2VLImageProcessorPil
    ) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> ImageOnlyQwenProcessor:
        """Reads the tokenizer and image-processor files of a ``processor`` folder (the layout
        of the Qwen-Image-Edit repositories and of ``save_pretrained``)."""
        return cls(
            AutoTokenizer.from_pretrained(path, **kwargs),
            Qwen2VLImageProcessorPil.from_pretrained(path, **kwargs),
        )

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        self.tokenizer.save_pretrained(directory)
        self.image_processor.save_pretrained(directory)

    def __call__(
        self,
        text: list[str],
        images: Image.Image | list[Image.Image] | None = None,
        padding: bool = True,
        return_tensors: str = "pt",
    ) -> BatchFeature:
        image_inputs: dict[str, Any] = {}
        if images is not None:
            image_inputs = dict(self.image_processor(images=images, return_tensors=return_tensors))
            text = self._expand_image_tokens(text, image_inputs["image_grid_thw"].tolist())
        tokens = self.tokenizer(text, padding=padding, return_tensors=return_tensors)
        return BatchFeature(data={**tokens, **image_inputs})

    def _expand_image_tokens(self, text: list[str], grids: list[list[int]]) -> list[str]:
        merge = self.image_processor.merge_size**2
        counts = iter([t * h * w // merge for t, h, w in grids])
        expanded = []
        for item in text:
            pieces = item.split(IMAGE_TOKEN)
            out = pieces[0]
            for piece in pieces[1:]:
                out += IMAGE_TOKEN * next(counts) + piece
            expanded.append(out)
        return expanded
