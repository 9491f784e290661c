"""The 503s of an outage under load are a few log lines, each saying how many answers it
stands for, not a line per request."""

from __future__ import annotations

import logging

import pytest

from qwenedit.api.outage_log import OUTAGE_LOG_SECONDS, OutageAnswers


def test_an_outage_under_load_is_a_line_every_few_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="qwenedit.api.errors")
    now = [0.0]
    answers = OutageAnswers(clock=lambda: now[0])
    error = ConnectionRefusedError(111, "Connect call failed")
    for _ in range(500):  # 500 answers in the first second
        answers.answered("GET /v1/credits", error)
        now[0] += 0.002
    now[0] = OUTAGE_LOG_SECONDS + 0.5
    answers.answered("POST /v1/images/generations", error)
    assert [record.getMessage() for record in caplog.records] == [
        "GET /v1/credits: answered 503 (ConnectionRefusedError: [Errno 111] Connect call failed)",
        "POST /v1/images/generations: answered 503 (ConnectionRefusedError: [Errno 111] Connect "
        "call failed); 499 more answered 503 since the last line, 10 s ago",
    ]
    now[0] += 3 * OUTAGE_LOG_SECONDS  # the next outage starts with a line of its own
    answers.answered("GET /v1/credits", error)
    assert caplog.records[-1].getMessage().endswith("Connect call failed)")
