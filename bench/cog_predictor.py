"""The Cog side of bench/vs_cog.py: the same no-op model as ``noop_engine.SolidEngine`` behind
Cog's async predictor interface. It decodes the input image, makes a solid image of the asked size
and returns it as a PNG, so both servers do the same image work around a model that takes no time.
Loaded by Cog (``COG_PREDICT_TYPE_STUB=cog_predictor.py:Predictor``), never by qwenedit."""

from __future__ import annotations

import asyncio
import os
import tempfile

from cog import BasePredictor, Input, Path  # type: ignore[import-not-found]
from PIL import Image

SECONDS = float(os.environ.get("BENCH_ENGINE_SECONDS", "0"))


class Predictor(BasePredictor):  # type: ignore[misc]
    async def predict(
        self,
        image: Path = Input(description="input image"),
        prompt: str = Input(default=""),
        width: int = Input(default=512),
        height: int = Input(default=512),
        seed: int = Input(default=0),
    ) -> Path:
        with Image.open(image) as source:
            source.convert("RGB")
        if SECONDS:
            await asyncio.sleep(SECONDS)
        out = Path(tempfile.mkdtemp()) / "out.png"
        Image.new("RGB", (width, height), (seed % 256, 90, 160)).save(out, format="PNG")
        return out
