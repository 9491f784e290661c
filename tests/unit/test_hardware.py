from __future__ import annotations

import pytest

from qwenedit.domain.hardware import recommend


@pytest.mark.parametrize(
    ("total_gb", "flags"),
    [
        (None, ("--engine", "tiny")),
        (80, ("--offload", "none")),
        (48, ("--offload", "model")),
        (24, ("--offload", "group", "--vae-tiling")),
        (16, ("--offload", "sequential", "--vae-tiling")),
    ],
)
def test_memory_tiers(total_gb: float | None, flags: tuple[str, ...]) -> None:
    recommendation = recommend(total_gb)
    assert recommendation.flags == flags
    assert recommendation.reason
