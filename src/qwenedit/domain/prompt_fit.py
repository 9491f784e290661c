"""Whether a prompt fits the model's text positions (DESIGN §7), decidable at create.

The Qwen-Image transformer gives text tokens rotary positions from a table of
``ROPE_POSITIONS``, starting after the largest image's index; a text sequence that runs past
the table's end fails inside the model, long after the task was accepted and charged. The
text sequence is the pipeline's chat template with, per input image, a "Picture N:" line and
its vision tokens, and the prompt, less the ``TEMPLATE_DROPPED`` tokens the pipeline drops.

Where an engine with a tokenizer is loaded, the prompt is counted with it, template included
(``count_prompt_tokens``). Elsewhere (an API-only node) the bound assumes the worst a
byte-level BPE such as Qwen2's can do: one token per UTF-8 byte. That refuses 2,000 rare CJK
characters (6,000 bytes) or 1,000 emoji (4,000 bytes) that the real tokenizer might still fit,
and never lets through one that overflows."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

ROPE_POSITIONS = 4096
"""``QwenEmbedRope``: ``torch.arange(4096)`` positions."""

_VAE_AREA = 1024 * 1024
_MAX_ASPECT = 3072 / 384
_SIDE_MULTIPLE = 32
_PIXELS_PER_PATCH = 16
IMAGE_INDEX_MAX = (
    (math.ceil(math.sqrt(_VAE_AREA * _MAX_ASPECT) / _SIDE_MULTIPLE) * _SIDE_MULTIPLE)
    // _PIXELS_PER_PATCH
    // 2
)
"""Where text positions start at the latest: half the longest side, in 16-px latent patches,
of the output or of an input at the VAE's ~1024² area. Inputs are 384-3072 px a side, so
the aspect ratio is at most 8:1 and the longest side 2912 px (91); an explicit output size of
at most 2048 px gives 64."""

TOKENS_PER_IMAGE = 256 + 16
"""Qwen2.5-VL sees each input at ~384² area: about 196 vision tokens (14-px patches merged
2x2), at most 195-200 for extreme aspect ratios; 256, plus "Picture N: " and the vision start
and end markers."""

TEMPLATE_DROPPED = 64
"""``prompt_template_encode_start_idx``: the pipeline drops the template's first 64 tokens."""

SAFE_TEMPLATE_TOKENS = 384 - TEMPLATE_DROPPED
"""The Edit-Plus chat template is 384 bytes of UTF-8 around the prompt; at one token per byte
at most 320 of its tokens stay in the sequence."""

CONTROL_TOKEN = re.compile(r"<\|[a-z_]+\|>")
"""The tokenizer's special tokens (``<|im_start|>``, ``<|image_pad|>``, ...): in a prompt they
would be read as the template's own markers, and a stray ``<|image_pad|>`` breaks the count of
image tokens the vision encoder expects."""

PromptCounter = Callable[[str], int]
"""Tokens the prompt takes in the text sequence, template included, images excluded."""


def safe_prompt_tokens(prompt: str) -> int:
    """The most tokens any byte-level BPE can make of ``prompt`` in the template."""
    return len(prompt.encode("utf-8")) + SAFE_TEMPLATE_TOKENS


def prompt_budget(images: int) -> int:
    """Positions left for the template and the prompt with ``images`` input images."""
    return ROPE_POSITIONS - IMAGE_INDEX_MAX - images * TOKENS_PER_IMAGE


def prompt_problem(prompt: str, images: int, count: PromptCounter | None) -> str | None:
    """Why ``prompt`` cannot be given to the model, or ``None`` when it fits."""
    if CONTROL_TOKEN.search(prompt):
        return "must not contain the model's control tokens such as <|im_start|>"
    tokens = (count or safe_prompt_tokens)(prompt)
    budget = prompt_budget(images)
    if tokens > budget:
        return (
            f"is too long for the model: with its template it may take {tokens} text "
            f"positions, and {images} image(s) leave {budget}"
        )
    return None
