"""One real edit end to end, as a client would do it.

Starts `qwenedit serve --engine tiny` on a free port with its own data dir, creates a key with
`qwenedit keys create --json`, submits examples/house.png as a data: URI (the outbound guard
refuses loopback URLs by default), follows the task to the end and downloads the result into
demo-output/. Exits 0 only when the edited image was written.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "demo-output"
QWENEDIT = str(Path(sys.executable).with_name("qwenedit"))
PROMPT = "Turn the sky into a warm sunset and add a red door"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(base: str, server: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not become ready in time")


def main() -> int:
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir()
    env = {**os.environ, "QWENEDIT_DATA_DIR": str(OUTPUT / "qwenedit-data"), "QWENEDIT_STEPS": "8"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([QWENEDIT, "serve", "--engine", "tiny", "--port", str(port)], env=env)
    try:
        wait_ready(base, server, time.monotonic() + 180)
        created = subprocess.run(
            [QWENEDIT, "keys", "create", "--account", "demo", "--credits", "10", "--json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        key = json.loads(created.stdout)["api_key"]
        image = base64.b64encode((ROOT / "examples" / "house.png").read_bytes()).decode()
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        task = client.post(
            "/v1/images/generations",
            json={
                "model": "qwen-image-edit-plus",
                "prompt": PROMPT,
                "image_urls": [f"data:image/png;base64,{image}"],
                "seed": 42,
            },
        ).json()
        estimate = task["task_info"]["estimated_time"]
        print(f"created {task['id']} ({task['status']}, about {estimate} s)")
        while task["status"] not in ("completed", "failed"):
            time.sleep(0.5)
            task = client.get(f"/v1/tasks/{task['id']}").json()
            print(f"  {task['status']:<10} {task['progress']:>3}%")
        if task["status"] != "completed":
            print(f"the task failed: {task['error']}")
            return 1
        for index, url in enumerate(task["results"]):
            path = OUTPUT / f"result-{index}.png"
            path.write_bytes(httpx.get(url, timeout=30).raise_for_status().content)
            print(f"wrote {path.relative_to(ROOT)}")
        print(f"credits used: {task['usage']['credits_used']}")
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
