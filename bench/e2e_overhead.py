"""What the server adds around the model: for tasks run one at a time on a real
`qwenedit serve --engine tiny` (SQLite), the time from create to completed (server-side
timestamps) minus the engine's own pipeline time, p50/p99, side by side with that engine time.

Inputs are fetched over loopback from a local image server (the guard is told to allow
127.0.0.1/32 only), so fetch, decode, encode and store are all in the figure.

    .venv/bin/python bench/e2e_overhead.py [--tasks 30] [--steps 2]
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from PIL import Image
from serverproc import p50_p99, percentile, running_server


def image_server() -> ThreadingHTTPServer:
    buffer = io.BytesIO()
    Image.new("RGB", (768, 512), (90, 140, 200)).save(buffer, format="PNG")
    payload = buffer.getvalue()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
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


def stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    images = image_server()
    url = f"http://127.0.0.1:{images.server_address[1]}/input.png"
    with tempfile.TemporaryDirectory() as tmp:
        settings = {
            "steps": str(args.steps),
            "allow_private_network": "127.0.0.1/32",
            "poll_seconds": "1",
        }
        with running_server(Path(tmp), ["--engine", "tiny"], **settings) as server:
            http = httpx.Client(
                base_url=server.base_url,
                headers={"Authorization": f"Bearer {server.api_key}"},
                timeout=60,
            )
            ids = []
            for index in range(args.tasks + 1):
                task = http.post(
                    "/v1/images/generations",
                    json={"prompt": "make it red", "image_urls": [url], "seed": index},
                ).json()
                while task["status"] not in ("completed", "failed"):
                    time.sleep(0.05)
                    task = http.get(f"/v1/tasks/{task['id']}").json()
                if task["status"] != "completed":
                    raise SystemExit(f"task failed: {task['error']}")
                ids.append(task["id"])
            database = sqlite3.connect(Path(tmp) / "qwenedit.db")
            marks = ",".join("?" * (len(ids) - 1))
            query = (
                f"SELECT created_at, finished_at, engine_seconds FROM tasks WHERE id IN ({marks})"
            )
            rows = database.execute(query, ids[1:]).fetchall()
    overhead = [stamp(finished) - stamp(created) - engine for created, finished, engine in rows]
    engine = [row[2] for row in rows]
    setup = f"tiny engine at {args.steps} steps, 768x512 PNG input over loopback"
    print(f"{len(rows)} tasks, one at a time (the first, warm-up, not counted), {setup}")
    print(f"overhead (create->completed minus engine): {p50_p99(overhead)}")
    print(f"engine's own pipeline time (baseline):     {p50_p99(engine)}")
    print(f"overhead/engine at p50: {percentile(overhead, 0.5) / percentile(engine, 0.5):.2f}")


if __name__ == "__main__":
    main()
