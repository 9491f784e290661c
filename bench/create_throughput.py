"""Task creation under load: 16 concurrent clients against a real `qwenedit serve --no-worker`,
on SQLite and on PostgreSQL. Prints tasks created per second and p50/p99 create latency, side by
side with a baseline: the same clients reading `GET /v1/credits` (authenticated, no write), so the
ratio shows what the create transaction costs over the HTTP + auth floor.

    .venv/bin/python bench/create_throughput.py [--clients 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from serverproc import p50_p99, postgres_database, running_server

BODY = {
    "model": "qwen-image-edit-plus",
    "prompt": "make the sky purple",
    "image_urls": ["https://images.example.com/house.png"],
}


async def load(
    base_url: str, api_key: str, clients: int, seconds: float, create: bool
) -> tuple[float, list[float]]:
    """Each client sends requests back to back until the time is up; returns (rate, latencies)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {api_key}"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                if create:
                    response = await http.post("/v1/images/generations", json=BODY)
                else:
                    response = await http.get("/v1/credits")
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - started), latencies


def measure(label: str, base_url: str, api_key: str, clients: int, seconds: float) -> None:
    asyncio.run(load(base_url, api_key, clients, 1.0, create=False))
    base_rate, base_lat = asyncio.run(load(base_url, api_key, clients, seconds, create=False))
    rate, lat = asyncio.run(load(base_url, api_key, clients, seconds, create=True))
    print(
        f"{label:<11} create {rate:7.1f}/s  {p50_p99(lat)} | "
        f"baseline GET /v1/credits {base_rate:7.1f}/s  {p50_p99(base_lat)} | "
        f"create/baseline rate {rate / base_rate:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    mode = "`qwenedit serve --no-worker`"
    print(f"{args.clients} concurrent clients, {args.seconds:g} s per run, {mode}")
    with tempfile.TemporaryDirectory() as tmp:
        with running_server(Path(tmp) / "sqlite", ["--no-worker"]) as server:
            measure("SQLite", server.base_url, server.api_key, args.clients, args.seconds)
        with (
            postgres_database() as url,
            running_server(Path(tmp) / "pg", ["--no-worker"], database_url=url) as server,
        ):
            measure("PostgreSQL", server.base_url, server.api_key, args.clients, args.seconds)


if __name__ == "__main__":
    main()
