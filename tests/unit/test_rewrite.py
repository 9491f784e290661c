from __future__ import annotations

import pytest

from qwenedit.domain.rewrite import parse_rewrite, quoted_texts


@pytest.mark.parametrize(
    "answer",
    [
        '{"Rewritten": "Make the sky in Picture 1 a deep orange sunset."}',
        '```json\n{"Rewritten": "Make the sky in Picture 1 a deep orange sunset."}\n```',
        'Sure! {"Rewritten": "Make the sky in Picture 1 a deep  orange sunset."} Done.',
    ],
)
def test_rewrites_are_read_from_json(answer: str) -> None:
    assert parse_rewrite(answer, "sunset sky") == "Make the sky in Picture 1 a deep orange sunset."


@pytest.mark.parametrize(
    "answer",
    [
        "Make the sky orange",
        '{"Rewritten": ""}',
        '{"Rewritten": 42}',
        '{"rewrite": "x"}',
        "[1, 2]",
        '{"Rewritten": "' + "x" * 2001 + '"}',
        "{not json}",
    ],
)
def test_unusable_answers_give_none(answer: str) -> None:
    assert parse_rewrite(answer, "make it orange") is None


def test_a_rewrite_that_drops_quoted_text_is_refused() -> None:
    original = 'Write "OPEN 24/7" on the sign'
    assert parse_rewrite('{"Rewritten": "Write OPEN on the sign"}', original) is None
    kept = '{"Rewritten": "Replace the sign text in Picture 1 with \\"OPEN 24/7\\" in red."}'
    assert (
        parse_rewrite(kept, original)
        == 'Replace the sign text in Picture 1 with "OPEN 24/7" in red.'
    )


def test_quoted_texts_in_several_styles() -> None:
    assert quoted_texts('add "Hi" and “Ciao” and 「你好」, don\'t') == ["Hi", "Ciao", "你好"]
