"""Idle CPU of `qwenedit serve`: milliseconds of CPU per second of wall time while nothing
happens, with the embedded worker and with `--no-worker`, on SQLite and on PostgreSQL.

    .venv/bin/python bench/idle_cpu.py [--seconds 60] [--rounds 2] [--skip-postgres]

CPU is utime + stime of the server and every process below it (`/proc/<pid>/stat`, in clock
ticks of 10 ms, hence the long window), counted from 2 s after the server is ready. The
background loops wake on their own schedules (fallback polls every 30 s, presence beats every
10 s, the reaper once a lease), so a window shorter than a minute sees some of them and not
others."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from serverproc import postgres_database, running_server, tree_cpu_seconds

BENCH = Path(__file__).resolve().parent
SETTLE_SECONDS = 2.0


def measure(
    database: str | None, serve_args: list[str], seconds: float, rounds: int
) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = {"allow_private_network": "127.0.0.0/8", "allow_insecure_callbacks": "true"}
        with running_server(Path(tmp), serve_args, database_url=database, **settings) as server:
            time.sleep(SETTLE_SECONDS)
            figures = []
            for _ in range(rounds):
                before, started = tree_cpu_seconds(server.pid), time.monotonic()
                time.sleep(seconds)
                used = tree_cpu_seconds(server.pid) - before
                figures.append(used / (time.monotonic() - started) * 1000)
            return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of one window")
    parser.add_argument("--rounds", type=int, default=2, help="windows per server")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    print(f"{sys.argv[0]} --seconds {args.seconds:g} --rounds {args.rounds}; ms of CPU per s")
    backends: list[tuple[str, AbstractContextManager[str | None]]] = [("SQLite", nullcontext())]
    if not args.skip_postgres:
        backends.append(("PostgreSQL", postgres_database()))
    for label, backend in backends:
        with backend as database:
            for mode, extra in (("serve", []), ("serve --no-worker", ["--no-worker"])):
                serve_args = ["--engine", "noop_engine:SolidEngine", *extra]
                figures = measure(database, serve_args, args.seconds, args.rounds)
                shown = "  ".join(f"{figure:5.2f}" for figure in figures)
                print(f"{label:<11} {mode:<18} {shown}", flush=True)


if __name__ == "__main__":
    main()
