"""The one exception hierarchy of qwenedit.

    QwenEditError
    ├── ConfigError            settings that cannot work (bad value, missing secret, no CUDA,
    │                          a bucket that does not exist or refuses the credentials)
    ├── StorageError           the blob store failed at run time (refused the request, ...)
    │   └── StorageUnavailable     ... or could not be reached or answered in time: an outage
    ├── DomainError            a rule of the domain or the store said no; services map it to an
    │   │                      ApiError (the store never speaks HTTP)
    │   ├── AccountNotFound        no account with that id or name
    │   ├── QuotaExceeded          the balance does not cover the amount (nothing moved)
    │   ├── TaskNotFound           no such task for this account, or past retention
    │   ├── TaskAlreadyFinished    the task is terminal
    │   ├── ActiveTaskLimitReached the account has its maximum of active tasks
    │   ├── QueueFull              the queue has its maximum of pending tasks
    │   ├── IdempotencyConflict    the key was used with another request
    │   ├── CallbackPending        a delivery of the task's callback is still under way
    │   ├── RedeliveryLimitReached the task's callback was sent again as often as allowed
    │   └── CreateTooLate          a create reached its commit too long after its id was made
    ├── ApiError               an HTTP answer in the error envelope (DESIGN §4.5)
    │   ├── InvalidRequest         400 invalid_request_error (also 409 conflicts)
    │   ├── AuthenticationFailed   401
    │   ├── InsufficientQuota      402
    │   ├── PermissionDenied       403
    │   ├── NotFound               404
    │   ├── MethodNotAllowed       405
    │   ├── RequestTimeout         408 (a client too slow to send its request)
    │   ├── Conflict               409
    │   ├── RequestTooLarge        413
    │   ├── RateLimited            429 (Retry-After)
    │   └── ServiceUnavailable     503 (Retry-After)
    ├── TaskFailure            ends a task as ``failed`` with an ``ErrorCode`` (DESIGN §4.2)
    │   └── TaskCancelled          request_cancelled: raised from the step callback
    ├── WorkerStopping         control signal, not a failure: the worker hands the task back
    ├── DependencyUnavailable  the database or blob store stayed away longer than the caller
    │                          could wait (a start-up deadline, a stop)
    ├── OutboundRefused        the guarded client refused a URL (scheme, address, size)
    ├── InputRejected          a URL refused by its text alone (internal literal host, bad data URI)
    └── ClientError            raised by the Python client (``qwenedit.client``), never the server
        ├── ResponseError          the server answered an error envelope: status, type, param
        │   ├── BadRequestError        400 (and 409)
        │   ├── AuthenticationError    401
        │   ├── InsufficientCreditsError 402
        │   ├── NotFoundError          404
        │   ├── RateLimitError         429, after the client's retries
        │   └── UnavailableError       503, after the client's retries
        ├── TaskFailed             the task ended ``failed``: its code and message
        ├── WaitTimeout            the task did not end within the caller's timeout
        └── WebhookVerificationError  a callback whose signature or timestamp does not check

A ``TaskFailure`` carries a message safe to show the task's owner: never an internal address.
"""

from __future__ import annotations

from qwenedit.domain.task import ErrorCode


class QwenEditError(Exception):
    """Base of every error qwenedit raises on purpose."""


class ConfigError(QwenEditError):
    """The configuration cannot work; the message says what to change."""


class StorageError(QwenEditError):
    """The blob store failed a request (a missing blob is not a failure: it reads as ``None``)."""


class StorageUnavailable(StorageError):
    """The blob store could not be reached, or failed to answer after the client's own retries
    (a network error, a timeout, a 5xx): an outage, waited out like the database's
    (``resilience.dependency_of``). A refusal (credentials, permissions) is a plain
    ``StorageError``: trying again would not help."""


class DomainError(QwenEditError):
    """A rule said no. Carries facts, not client text: services word the answer."""


class AccountNotFound(DomainError):
    def __init__(self, account: int | str) -> None:
        super().__init__(f"no account {account!r}")
        self.account = account


class QuotaExceeded(DomainError):
    def __init__(self, needed_milli: int, balance_milli: int) -> None:
        super().__init__(f"needs {needed_milli} milli-credits, the balance is {balance_milli}")
        self.needed_milli = needed_milli
        self.balance_milli = balance_milli


class TaskNotFound(DomainError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task {task_id}")
        self.task_id = task_id


class TaskAlreadyFinished(DomainError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} has already finished")
        self.task_id = task_id


class ActiveTaskLimitReached(DomainError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} active tasks per account")
        self.limit = limit


class QueueFull(DomainError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} pending tasks")
        self.limit = limit


class IdempotencyConflict(DomainError):
    def __init__(self, key: str) -> None:
        super().__init__("the idempotency key was used with a different request")
        self.key = key


class CallbackPending(DomainError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"a callback delivery of task {task_id} is pending")
        self.task_id = task_id


class CreateTooLate(DomainError):
    """A create whose commit came more than ``seconds`` after its task id was made (the process
    stalled): refused, so that the sweep of orphaned inputs never meets a task younger than
    it assumes (``worker.reaper.ORPHAN_AGE_SECONDS``)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the create reached its commit more than {seconds:g} s late")
        self.seconds = seconds


class RedeliveryLimitReached(DomainError):
    def __init__(self, task_id: str, limit: int) -> None:
        super().__init__(f"task {task_id}: its callback was redelivered {limit} times")
        self.task_id = task_id
        self.limit = limit


class ApiError(QwenEditError):
    status = 500
    type = "internal_server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        fallback_suggestion: str | None = None,
        retry_after: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.fallback_suggestion = fallback_suggestion
        self.retry_after = retry_after
        self.code = code
        """A failed task's error code, for answers that end with the task (OpenAI's shape)."""


class InvalidRequest(ApiError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(ApiError):
    status = 401
    type = "authentication_error"


class InsufficientQuota(ApiError):
    status = 402
    type = "insufficient_quota_error"


class PermissionDenied(ApiError):
    status = 403
    type = "permission_error"


class NotFound(ApiError):
    status = 404
    type = "not_found_error"


class MethodNotAllowed(ApiError):
    status = 405
    type = "invalid_request_error"


class RequestTimeout(ApiError):
    status = 408
    type = "request_timeout_error"


class Conflict(ApiError):
    status = 409
    type = "invalid_request_error"


class RequestTooLarge(ApiError):
    status = 413
    type = "request_too_large_error"


class RateLimited(ApiError):
    status = 429
    type = "rate_limit_error"


class ServiceUnavailable(ApiError):
    status = 503
    type = "service_unavailable_error"


class InternalError(ApiError):
    status = 500
    type = "internal_server_error"


class TaskFailure(QwenEditError):
    """Ends a task ``failed`` with ``code`` and a message safe to show its owner."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


class TaskCancelled(TaskFailure):
    def __init__(self, message: str = "The task was cancelled") -> None:
        super().__init__(ErrorCode.REQUEST_CANCELLED, message)


class WorkerStopping(QwenEditError):
    """Raised from the step callback when a stopping worker gives its task back to the queue:
    the task is released, not failed."""


class DependencyUnavailable(QwenEditError):
    """A dependency stayed unreachable past the caller's patience, or the caller was asked to
    stop while waiting for it (``qwenedit.resilience``); the message is one line."""


class OutboundRefused(QwenEditError):
    """A URL the guarded client will not fetch or post to; the message names no address."""


class InputRejected(QwenEditError):
    """An input image or callback URL refused before any network use (``media.sources``);
    the message is safe to show the client and names no address."""


class ClientError(QwenEditError):
    """Raised by the Python client."""


class ResponseError(ClientError):
    """An error answer, with the fields of its envelope (DESIGN §4.5)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "",
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {type}: {message}" + (f" (param: {param})" if param else ""))
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.retry_after = retry_after


class BadRequestError(ResponseError):
    pass


class AuthenticationError(ResponseError):
    pass


class InsufficientCreditsError(ResponseError):
    pass


class NotFoundError(ResponseError):
    pass


class RateLimitError(ResponseError):
    pass


class UnavailableError(ResponseError):
    pass


class TaskFailed(ClientError):
    """The task ended ``failed``; ``code`` is one of DESIGN §4.2's error codes."""

    def __init__(self, task_id: str, code: str, message: str) -> None:
        super().__init__(f"task {task_id} failed: {code}: {message}")
        self.task_id = task_id
        self.code = code
        self.message = message


class WaitTimeout(ClientError, TimeoutError):
    """The task was still running when the caller's timeout ran out (it was not cancelled)."""

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(f"task {task_id} did not end within {timeout:g} s")
        self.task_id = task_id


class WebhookVerificationError(ClientError):
    """A callback that does not carry a valid, fresh Standard Webhooks signature."""
