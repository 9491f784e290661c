"""Logging: plain text for people, or one JSON object per line for log shippers
(``QWENEDIT_LOG_FORMAT=json``). Ids travel as structured fields (``extra={"task_id": ...}``),
which both formats show."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from qwenedit.config import Settings
from qwenedit.domain.task import TaskRecord

FIELDS = ("task_id", "account", "attempt", "worker", "status", "code")
"""The structured fields a record may carry, in the order the text format shows them."""


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(f"{key}={value}" for key, value in fields_of(record).items())
        return f"{text} [{extra}]" if extra else text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)


def task_fields(task: TaskRecord, **more: Any) -> dict[str, Any]:
    """The structured fields of a log line about ``task`` (pass as ``extra=``)."""
    worker = more.pop("worker", task.worker_id)
    fields = {"task_id": task.id, "account": task.account_id, "attempt": task.attempt}
    return {**fields, "worker": worker, **more} if worker else {**fields, **more}
