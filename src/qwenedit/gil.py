"""How soon a thread that finished its work gets the interpreter back from the event loop.

A thread that wants the GIL while another runs Python waits until the running one gives it
up, which a busy thread does every ``sys.getswitchinterval()``: 5 ms by default. The node's
event loop thread hands work to threads all the time (each SQLite commit's fsync, image
checks, encoding and file writes), and each of those needs the GIL back for a moment to
finish. With the loop busy, every hand-off back could wait 5 ms, and a SQLite commit holds the
database's write lock all that while, so every other write queued behind it. A shorter
interval costs a loop that runs alone nothing (nobody asks for the GIL) and a contended one a
few more switches: creates per second +7% on SQLite (bench/vs_cog.py, (c)), the engine's own
threads (torch releases the GIL in its kernels) unaffected."""

from __future__ import annotations

import sys

SWITCH_INTERVAL_SECONDS = 0.0005


def hand_back_quickly() -> None:
    """Let a waiting thread have the GIL within ``SWITCH_INTERVAL_SECONDS``. Process-wide:
    only a program that is nothing but the node calls it."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
