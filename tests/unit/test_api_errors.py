"""The wording of the domain's refusals on the wire: status, type, param, Retry-After."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa

from qwenedit.errors import (
    AccountNotFound,
    ActiveTaskLimitReached,
    DependencyUnavailable,
    DomainError,
    IdempotencyConflict,
    QueueFull,
    QuotaExceeded,
    TaskAlreadyFinished,
    TaskNotFound,
)
from qwenedit.services.api_errors import OUTAGE_RETRY_AFTER, as_api_error, outage_error


@pytest.mark.parametrize(
    ("error", "status", "param", "retry_after", "message"),
    [
        (
            QuotaExceeded(1000, 0),
            402,
            None,
            None,
            "Insufficient credits: this request needs 1 credits, the balance is 0",
        ),
        (
            QuotaExceeded(1501, 1500),
            402,
            None,
            None,
            "Insufficient credits: this request needs 1.501 credits, the balance is 1.5",
        ),
        (
            TaskNotFound("task-unified-1-aaaaaaaa"),
            404,
            "task_id",
            None,
            "Task not found or expired",
        ),
        (TaskAlreadyFinished("t"), 409, "task_id", None, "The task has already finished"),
        (
            ActiveTaskLimitReached(2),
            429,
            None,
            5,
            "Too many active tasks: at most 2 may be pending or processing at once",
        ),
        (QueueFull(10), 503, None, 10, "The queue is full, try again shortly"),
        (
            IdempotencyConflict("k"),
            409,
            "Idempotency-Key",
            None,
            "This Idempotency-Key was already used with a different request",
        ),
        (AccountNotFound(3), 404, None, None, "Account not found"),
    ],
)
def test_each_domain_error_has_its_wire_answer(
    error: DomainError, status: int, param: str | None, retry_after: int | None, message: str
) -> None:
    answer = as_api_error(error)
    assert (answer.status, answer.param, answer.retry_after, answer.message) == (
        status,
        param,
        retry_after,
        message,
    )


@pytest.mark.parametrize(
    "error",
    [
        sa.OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "refused")),
        ConnectionResetError(104, "reset by peer"),
        DependencyUnavailable("the server is stopping"),
    ],
)
def test_an_unreachable_dependency_is_a_503_to_try_again(error: Exception) -> None:
    answer = outage_error(error)
    assert answer is not None
    assert (answer.status, answer.type) == (503, "service_unavailable_error")
    assert answer.retry_after == OUTAGE_RETRY_AFTER


@pytest.mark.parametrize(
    "error", [sa.IntegrityError("INSERT", {}, ValueError("duplicate")), ValueError("a bug")]
)
def test_any_other_error_is_not_an_outage(error: Exception) -> None:
    assert outage_error(error) is None
