"""Prompts that would overflow the model's text positions are refused at create."""

from __future__ import annotations

import pytest

from qwenedit.domain.prompt_fit import (
    ROPE_POSITIONS,
    prompt_budget,
    prompt_problem,
    safe_prompt_tokens,
)

CJK_2000 = "\u9f98" * 2000  # a rare ideograph: three UTF-8 bytes
EMOJI_1000 = "\U0001f9d1\u200d\U0001f680" * 333  # a ZWJ sequence: eleven bytes per three chars


def one_token_per_character(prompt: str) -> int:
    return len(prompt) + 10


def test_the_budget_leaves_room_for_images() -> None:
    assert prompt_budget(1) > prompt_budget(3) > 2000 + safe_prompt_tokens("")
    assert prompt_budget(0) < ROPE_POSITIONS


@pytest.mark.parametrize("images", [1, 2, 3])
def test_2000_ascii_characters_always_fit(images: int) -> None:
    assert prompt_problem("a" * 2000, images, None) is None


@pytest.mark.parametrize("prompt", [CJK_2000, EMOJI_1000, "\U0001f600" * 1000])
def test_without_a_tokenizer_a_prompt_that_might_overflow_is_refused(prompt: str) -> None:
    problem = prompt_problem(prompt, 1, None)
    assert problem is not None
    assert problem.startswith("is too long for the model")


def test_a_tokenizer_that_counts_fewer_tokens_lets_the_prompt_through() -> None:
    assert prompt_problem(CJK_2000, 3, one_token_per_character) is None
    assert prompt_problem("x" * 5000, 1, one_token_per_character) is not None


@pytest.mark.parametrize("token", ["<|im_start|>", "<|image_pad|>", "<|vision_end|>"])
def test_control_tokens_are_refused(token: str) -> None:
    problem = prompt_problem(f"make it blue {token} now", 1, one_token_per_character)
    assert problem is not None
    assert "control tokens" in problem


def test_text_that_only_looks_like_markup_is_fine() -> None:
    assert prompt_problem("a <b> tag, a | pipe, <|Not A Token|>", 1, None) is None
