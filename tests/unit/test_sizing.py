from __future__ import annotations

import pytest

from qwenedit.domain.sizing import default_output_size, output_size, round_to_multiple


@pytest.mark.parametrize(
    ("value", "expected"), [(1030, 1024), (1000, 1008), (1032, 1040), (1024, 1024), (520, 528)]
)
def test_round_halves_up(value: int, expected: int) -> None:
    assert round_to_multiple(value, 16) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1000, 1000), (1024, 1024)), ((384, 384), (1024, 1024)), ((1600, 900), (1376, 768))],
)
def test_default_keeps_aspect_at_one_megapixel(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert default_output_size(size) == expected


def test_default_matches_the_pipeline_rule() -> None:
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import calculate_dimensions

    for size in [(384, 3072), (3072, 384), (640, 480), (777, 1234), (2000, 1999)]:
        width, height = calculate_dimensions(1024 * 1024, size[0] / size[1])
        assert default_output_size(size) == (width, height)


def test_requested_size_wins() -> None:
    assert output_size((512, 768), (3000, 400)) == (512, 768)
    assert output_size(None, (1000, 1000)) == (1024, 1024)
