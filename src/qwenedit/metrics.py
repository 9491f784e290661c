"""In-process Prometheus counters and the text exposition format (no client library needed
for a handful of counters)."""

from __future__ import annotations

import threading
from collections import defaultdict

Labels = tuple[tuple[str, str], ...]

HELP = {
    "qwenedit_tasks_created_total": "Tasks accepted by this process.",
    "qwenedit_tasks_finished_total": "Tasks finished by this process's workers, by outcome.",
    "qwenedit_engine_seconds_total": "Seconds spent inside engine calls by this process.",
    "qwenedit_tasks_requeued_total": "Tasks whose lease expired and were requeued by the reaper.",
    "qwenedit_tasks": "Tasks in the database by stored status.",
    "qwenedit_workers_alive": "Workers that sent a heartbeat recently.",
}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0.0) + amount

    def render(self, gauges: dict[str, dict[Labels, float]]) -> str:
        """The counters of this process plus ``gauges`` read at scrape time."""
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
        lines: list[str] = []
        for kind, families in (("counter", counters), ("gauge", gauges)):
            for name, series in sorted(families.items()):
                lines += [f"# HELP {name} {HELP.get(name, name)}", f"# TYPE {name} {kind}"]
                for labels, value in sorted(series.items()):
                    text = ",".join(f'{key}="{val}"' for key, val in labels)
                    lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")
        return "\n".join(lines) + "\n"
