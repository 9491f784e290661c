"""Idle CPU of `qwenedit serve`: milliseconds of CPU per second of wall time while nothing
happens, with the embedded worker and with `--no-worker`, on SQLite and on PostgreSQL.

    .venv/bin/python bench/idle_cpu.py [--seconds 60] [--rounds 2] [--skip-postgres]

CPU is the time the server's threads (and those of any process below it) spent on a CPU, as the
scheduler counts it in nanoseconds (`serverproc.tree_run_times`), counted from 2 s after the
server is ready; beside it, in brackets, utime + stime from `/proc/<pid>/stat`, which are clock
ticks of 10 ms charged to whoever is running when one lands, and overcharge a process that
wakes on timers. The
background loops wake on their own schedules (fallback polls every 30 s, presence beats every
10 s, the reaper once a lease), so a window shorter than a minute sees some of them and not
others."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from serverproc import (
    postgres_database,
    run_seconds_between,
    running_server,
    tree_cpu_seconds,
    tree_run_times,
)

BENCH = Path(__file__).resolve().parent
SETTLE_SECONDS = 2.0


def measure(
    database: str | None, serve_args: list[str], seconds: float, rounds: int
) -> list[tuple[float, float]]:
    """Per window: ms per s on a CPU by the scheduler's count, and by clock ticks."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = {"allow_private_network": "127.0.0.0/8", "allow_insecure_callbacks": "true"}
        with running_server(Path(tmp), serve_args, database_url=database, **settings) as server:
            time.sleep(SETTLE_SECONDS)
            figures = []
            for _ in range(rounds):
                threads, ticked = tree_run_times(server.pid), tree_cpu_seconds(server.pid)
                started = time.monotonic()
                time.sleep(seconds)
                elapsed = time.monotonic() - started
                ran = run_seconds_between(threads, tree_run_times(server.pid))
                ticked = tree_cpu_seconds(server.pid) - ticked
                figures.append((ran / elapsed * 1000, ticked / elapsed * 1000))
            return figures


def wake_cost_ms() -> tuple[float, float]:
    """CPU ms of the same small piece of work (a SQLite commit and some arithmetic) done hot,
    and done right after 1 s asleep. On some VMs a thread that wakes from a sleep runs several
    times slower for a while (cold caches, a vCPU rescheduled): there every wake-up of an idle
    server costs milliseconds however little it does, and the wake-ups per second are what
    decides its idle CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        database = sqlite3.connect(Path(tmp) / "wake.db", isolation_level=None)
        database.execute("PRAGMA journal_mode=WAL")
        database.execute("CREATE TABLE beats (at REAL)")

        def work() -> float:
            started = time.thread_time()
            database.execute("BEGIN IMMEDIATE")
            database.execute("INSERT INTO beats VALUES (?)", (time.time(),))
            database.execute("COMMIT")
            sum(range(20_000))
            return (time.thread_time() - started) * 1000

        hot = sorted(work() for _ in range(20))[10]
        cold = []
        for _ in range(5):
            time.sleep(1)
            cold.append(work())
        database.close()
    return hot, sorted(cold)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of one window")
    parser.add_argument("--rounds", type=int, default=2, help="windows per server")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    print(
        f"{sys.argv[0]} --seconds {args.seconds:g} --rounds {args.rounds}; "
        "ms of CPU per s (by clock ticks)"
    )
    hot, cold = wake_cost_ms()
    print(
        f"this machine: a small write costs {hot:.2f} ms of CPU hot, {cold:.2f} ms after 1 s asleep"
    )
    backends: list[tuple[str, AbstractContextManager[str | None]]] = [("SQLite", nullcontext())]
    if not args.skip_postgres:
        backends.append(("PostgreSQL", postgres_database()))
    for label, backend in backends:
        with backend as database:
            for mode, extra in (("serve", []), ("serve --no-worker", ["--no-worker"])):
                serve_args = ["--engine", "noop_engine:SolidEngine", *extra]
                figures = measure(database, serve_args, args.seconds, args.rounds)
                shown = "  ".join(f"{ran:5.2f} ({ticked:5.2f})" for ran, ticked in figures)
                print(f"{label:<11} {mode:<18} {shown}", flush=True)


if __name__ == "__main__":
    main()
