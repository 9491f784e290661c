"""Where a task's time goes on the tiny engine, stage by stage, with the real components:
fetch (guarded client, loopback image server), decode, the pipeline call, watermark + PNG
encode, store (local blob store). Prints the share spent outside the pipeline call.

Then n = 6: counts pipeline calls and prompt encodings for one task of six images, side by side
with the baseline of six n = 1 tasks (what a server without batching does).

    .venv/bin/python bench/engine_overhead.py [--tasks 20] [--steps 2]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import Image

from qwenedit.blobs.local import LocalBlobStore
from qwenedit.config import Settings
from qwenedit.domain.sizing import output_size
from qwenedit.engines.base import EditJob, Engine
from qwenedit.engines.registry import load_engine
from qwenedit.media.guarded_client import GuardedClient
from qwenedit.media.images import decode_input_image, encode_png
from qwenedit.media.watermark import apply_watermark


def image_server() -> ThreadingHTTPServer:
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 768), (90, 140, 200)).save(buffer, format="PNG")
    payload = buffer.getvalue()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def one_task(
    engine: Engine,
    client: GuardedClient,
    store: LocalBlobStore,
    url: str,
    settings: Settings,
    n: int,
    index: int,
) -> dict[str, float]:
    times: dict[str, float] = {}
    started = time.perf_counter()
    data = await client.fetch(url, max_bytes=settings.max_image_bytes)
    times["fetch"] = time.perf_counter() - started
    mark = time.perf_counter()
    image = await asyncio.to_thread(decode_input_image, data, 0, settings)
    times["decode"] = time.perf_counter() - mark
    width, height = output_size(None, image.size)
    job = EditJob("make the sky orange", (image,), n, width, height, None, index)
    mark = time.perf_counter()
    output = await asyncio.to_thread(engine.edit, job, lambda done, total: None)
    times["pipeline"] = time.perf_counter() - mark
    mark = time.perf_counter()
    encoded = [
        await asyncio.to_thread(lambda i=i: encode_png(apply_watermark(i))) for i in output.images
    ]
    times["encode"] = time.perf_counter() - mark
    mark = time.perf_counter()
    for position, png in enumerate(encoded):
        await store.put(f"bench-{index}/1/{position}.png", png)
    times["store"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - started
    return times


def counting(engine: Any) -> dict[str, int]:
    """Wraps the tiny pipeline's __call__ and encode_prompt to count them."""
    counts = {"pipeline calls": 0, "prompt encodings": 0}
    pipeline = engine.pipeline
    real_encode = pipeline.encode_prompt
    real_class_call = type(pipeline).__call__

    def encode(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("prompt_embeds") is None:
            counts["prompt encodings"] += 1
        return real_encode(*args, **kwargs)

    class Counted(type(pipeline)):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            counts["pipeline calls"] += 1
            return real_class_call(self, *args, **kwargs)

    pipeline.encode_prompt = encode
    pipeline.__class__ = Counted
    return counts


async def main(tasks: int, steps: int) -> None:
    settings = Settings(engine="tiny", steps=steps, allow_private_network="127.0.0.1/32")
    engine = load_engine(settings)
    server = image_server()
    url = f"http://127.0.0.1:{server.server_address[1]}/in.png"
    client = GuardedClient(settings)
    with tempfile.TemporaryDirectory() as root:
        store = LocalBlobStore(Path(root))
        await one_task(engine, client, store, url, settings, 1, -1)  # warm-up
        runs = [await one_task(engine, client, store, url, settings, 1, i) for i in range(tasks)]
        print(f"tiny engine, {steps} steps, {tasks} tasks of n=1 (1024x768 input, output 1184x896)")
        print(f"{'stage':<10} {'median ms':>10} {'share':>7}")
        total = statistics.median(r["total"] for r in runs)
        for stage in ("fetch", "decode", "pipeline", "encode", "store"):
            value = statistics.median(r[stage] for r in runs)
            print(f"{stage:<10} {value * 1000:>10.1f} {value / total:>6.0%}")
        outside = statistics.median(r["total"] - r["pipeline"] for r in runs)
        print(
            f"outside the pipeline call: {outside * 1000:.1f} ms of {total * 1000:.1f} ms "
            f"({outside / total:.0%})"
        )

        counts = counting(engine)
        batched = await one_task(engine, client, store, url, settings, 6, 100)
        batched_counts = dict(counts)
        counts.update({key: 0 for key in counts})
        started = time.perf_counter()
        for i in range(6):
            await one_task(engine, client, store, url, settings, 1, 200 + i)
        baseline_seconds = time.perf_counter() - started
        print()
        print(f"{'six images':<22} {'one n=6 task':>14} {'six n=1 tasks':>14} {'ratio':>7}")
        for key in ("pipeline calls", "prompt encodings"):
            print(
                f"{key:<22} {batched_counts[key]:>14} {counts[key]:>14} "
                f"{batched_counts[key] / counts[key]:>6.2f}x"
            )
        print(
            f"{'wall seconds':<22} {batched['total']:>14.2f} {baseline_seconds:>14.2f} "
            f"{batched['total'] / baseline_seconds:>6.2f}x"
        )
    await client.aclose()
    server.shutdown()
    engine.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.tasks, arguments.steps))
