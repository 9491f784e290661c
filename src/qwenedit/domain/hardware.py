"""Which ``qwen`` engine configuration fits a GPU (``qwenedit doctor``).

Public figures (DESIGN §7): bf16 weights are about 41 GB for the transformer and 17 GB for the
text encoder, plus activations and the VAE. Only options that exist are recommended."""

from __future__ import annotations

from dataclasses import dataclass

WEIGHTS_GB = 58.0
ALL_ON_GPU_GB = 70.0
MODEL_OFFLOAD_GB = 40.0
GROUP_OFFLOAD_GB = 20.0


@dataclass(frozen=True)
class Recommendation:
    flags: tuple[str, ...]
    reason: str


def recommend(total_gb: float | None) -> Recommendation:
    """The flags for ``serve``/``worker`` on a GPU with ``total_gb`` of memory (``None``: no
    CUDA GPU)."""
    if total_gb is None:
        return Recommendation(
            ("--engine", "tiny"),
            "No CUDA GPU: the real model cannot run here. Use the tiny engine to try the server, "
            "or --engine remote with QWENEDIT_REMOTE_URL to send edits to a GPU server.",
        )
    if total_gb >= ALL_ON_GPU_GB:
        return Recommendation(
            ("--offload", "none"),
            f"{total_gb:.0f} GB holds all {WEIGHTS_GB:.0f} GB of bf16 weights with room for "
            "activations: everything stays on the GPU (fastest). Add --fast 8 for ~5x speed.",
        )
    if total_gb >= MODEL_OFFLOAD_GB:
        return Recommendation(
            ("--offload", "model"),
            f"{total_gb:.0f} GB holds the 41 GB transformer but not the text encoder beside it: "
            "model offload moves whole components to the GPU when they run.",
        )
    if total_gb >= GROUP_OFFLOAD_GB:
        return Recommendation(
            ("--offload", "group", "--vae-tiling"),
            f"{total_gb:.0f} GB cannot hold the transformer: group offload streams its blocks "
            "from CPU memory (needs ~64 GB of RAM), VAE tiling bounds decoder memory.",
        )
    return Recommendation(
        ("--offload", "sequential", "--vae-tiling"),
        f"{total_gb:.0f} GB is below what group offload needs: sequential offload runs layer by "
        "layer from CPU memory. It works, slowly; a remote engine is the better choice.",
    )
