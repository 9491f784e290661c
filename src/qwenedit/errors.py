"""The one exception hierarchy of qwenedit.

    QwenEditError
    ├── ConfigError            settings that cannot work (bad value, missing secret, no CUDA)
    ├── ApiError               an HTTP answer in the error envelope (DESIGN §4.5)
    │   ├── InvalidRequest         400 invalid_request_error (also 409 conflicts)
    │   ├── AuthenticationFailed   401
    │   ├── InsufficientQuota      402
    │   ├── PermissionDenied       403
    │   ├── NotFound               404
    │   ├── MethodNotAllowed       405
    │   ├── Conflict               409
    │   ├── RequestTooLarge        413
    │   ├── RateLimited            429 (Retry-After)
    │   └── ServiceUnavailable     503 (Retry-After)
    ├── TaskFailure            ends a task as ``failed`` with a wire error code (DESIGN §4.2)
    │   ├── TaskCancelled          request_cancelled: raised from the step callback
    │   └── WorkerStopping         the worker is shutting down and hands the task back
    └── OutboundRefused        the guarded client refused a URL (scheme, address, size)

A ``TaskFailure`` carries a message safe to show the task's owner: never an internal address.
"""

from __future__ import annotations


class QwenEditError(Exception):
    """Base of every error qwenedit raises on purpose."""


class ConfigError(QwenEditError):
    """The configuration cannot work; the message says what to change."""


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
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.fallback_suggestion = fallback_suggestion
        self.retry_after = retry_after


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
    """Ends a task ``failed`` with ``code`` (a DESIGN §4.2 error code) and a user-safe message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TaskCancelled(TaskFailure):
    def __init__(self, message: str = "The task was cancelled") -> None:
        super().__init__("request_cancelled", message)


class WorkerStopping(TaskFailure):
    """Raised from the step callback when a stopping worker gives its task back to the queue
    (it is released, not failed; the code is only used if the release itself fails)."""

    def __init__(self) -> None:
        super().__init__("service_unavailable", "The worker shut down during the task")


class OutboundRefused(QwenEditError):
    """A URL the guarded client will not fetch or post to; the message names no address."""
