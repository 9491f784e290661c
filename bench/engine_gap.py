"""Does the engine wait for I/O under a backlog? A real ``qwenedit serve`` (SQLite) whose engine
sleeps a set time per call (``noop_engine.SolidEngine``) gets a queue of tasks whose input is
fetched from a loopback image server that answers slowly. Prints the idle gap between one engine
call's end and the next one's start, p50/p99, and the share of the wall time the engine was busy,
side by side with the same run against an image server that answers at once: with the next task
prepared while the engine runs, slow inputs leave the gap where it was.

    .venv/bin/python bench/engine_gap.py [--tasks 50] [--engine-seconds 1] [--fetch-ms 200]
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from PIL import Image
from serverproc import percentile, running_server

BENCH = Path(__file__).resolve().parent


def image_server(delay: float) -> ThreadingHTTPServer:
    buffer = io.BytesIO()
    Image.new("RGB", (384, 384), (90, 140, 200)).save(buffer, format="PNG")
    payload = buffer.getvalue()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run(data_dir: Path, tasks: int, engine_seconds: float, fetch_seconds: float) -> str:
    images = image_server(fetch_seconds)
    url = f"http://127.0.0.1:{images.server_address[1]}/input.png"
    calls = data_dir / "engine-calls.txt"
    os.environ["BENCH_ENGINE_SECONDS"] = str(engine_seconds)
    os.environ["BENCH_ENGINE_LOG"] = str(calls)
    data_dir.mkdir(parents=True)
    serve = ["--engine", "noop_engine:SolidEngine"]
    with running_server(data_dir, serve, allow_private_network="127.0.0.0/8") as server:
        calls.unlink(missing_ok=True)  # the warm-up call
        http = httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=60,
        )
        body = {"prompt": "make it red", "image_urls": [url], "size": "512x512"}
        ids = [
            http.post(
                "/v1/images/generations", json={**body, "prompt_extend": False, "seed": seed}
            ).json()["id"]
            for seed in range(tasks)
        ]
        for task_id in ids:
            while http.get(f"/v1/tasks/{task_id}").json()["status"] not in ("completed", "failed"):
                time.sleep(0.1)
    images.shutdown()
    spans = sorted(tuple(map(float, line.split())) for line in calls.read_text().splitlines())
    gaps = [start - end for (_, end), (start, _) in itertools.pairwise(spans)]
    busy = sum(end - start for start, end in spans) / (spans[-1][1] - spans[0][0])
    p50, p99 = (percentile(gaps, share) * 1000 for share in (0.5, 0.99))
    return f"gap p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  engine busy {busy:6.1%}  ({len(gaps)} gaps)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--engine-seconds", type=float, default=1.0)
    parser.add_argument("--fetch-ms", type=float, default=200.0)
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    print(
        f"{args.tasks} queued tasks, engine {args.engine_seconds:g} s per call, "
        "`qwenedit serve` on SQLite"
    )
    with tempfile.TemporaryDirectory() as tmp:
        slow = run(Path(tmp) / "slow", args.tasks, args.engine_seconds, args.fetch_ms / 1000)
        print(f"inputs served in {args.fetch_ms:g} ms: {slow}")
        fast = run(Path(tmp) / "fast", args.tasks, args.engine_seconds, 0.0)
        print(f"inputs served at once:  {fast}")


if __name__ == "__main__":
    main()
