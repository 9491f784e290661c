"""How the domain's refusals read on the wire: client text, status and ``Retry-After``.

The store and the domain raise ``DomainError`` with facts; this is the one place that words
them. The API's error handler applies it to any ``DomainError`` a service lets through."""

from __future__ import annotations

from qwenedit.domain.money import credits_text
from qwenedit.errors import (
    AccountNotFound,
    ActiveTaskLimitReached,
    ApiError,
    CallbackPending,
    Conflict,
    CreateTooLate,
    DependencyUnavailable,
    DomainError,
    IdempotencyConflict,
    InsufficientQuota,
    InternalError,
    NotFound,
    QueueFull,
    QuotaExceeded,
    RateLimited,
    RedeliveryLimitReached,
    ServiceUnavailable,
    TaskAlreadyFinished,
    TaskNotFound,
)
from qwenedit.resilience import dependency_of

ACTIVE_LIMIT_RETRY_AFTER = 5
QUEUE_FULL_RETRY_AFTER = 10
OUTAGE_RETRY_AFTER = 2
"""Seconds a client is asked to wait when the database or the blob store cannot be reached:
the background loops' backoff finds a return within about that."""


def outage_error(error: BaseException) -> ApiError | None:
    """The 503 for an error that means a dependency cannot be reached right now (an outage, or
    the server stopping while a write waited); ``None`` for any other error, a bug. The client
    is told to try again, and not which dependency failed."""
    if isinstance(error, DependencyUnavailable) or dependency_of(error) is not None:
        return ServiceUnavailable(
            "The service is briefly unavailable, try again shortly",
            retry_after=OUTAGE_RETRY_AFTER,
        )
    return None


def as_api_error(error: DomainError) -> ApiError:
    match error:
        case QuotaExceeded(needed_milli=needed, balance_milli=balance):
            return InsufficientQuota(
                f"Insufficient credits: this request needs {credits_text(needed)} credits, "
                f"the balance is {credits_text(balance)}"
            )
        case TaskNotFound():
            return NotFound("Task not found or expired", param="task_id")
        case TaskAlreadyFinished():
            return Conflict("The task has already finished", param="task_id")
        case ActiveTaskLimitReached(limit=limit):
            return RateLimited(
                f"Too many active tasks: at most {limit} may be pending or processing at once",
                retry_after=ACTIVE_LIMIT_RETRY_AFTER,
            )
        case QueueFull():
            return ServiceUnavailable(
                "The queue is full, try again shortly", retry_after=QUEUE_FULL_RETRY_AFTER
            )
        case IdempotencyConflict():
            return Conflict(
                "This Idempotency-Key was already used with a different request",
                param="Idempotency-Key",
            )
        case CallbackPending():
            return Conflict(
                "A delivery of this task's callback is still pending: ask again once it has "
                "been delivered or has failed",
                param="task_id",
            )
        case RedeliveryLimitReached(limit=limit):
            return Conflict(
                f"This task's callback was already sent again {limit} times, the most allowed",
                param="task_id",
            )
        case AccountNotFound():
            return NotFound("Account not found")
        case CreateTooLate():
            return ServiceUnavailable(
                "The request took too long to be accepted; nothing was charged, try again",
                retry_after=OUTAGE_RETRY_AFTER,
            )
    return InternalError("Internal server error")
