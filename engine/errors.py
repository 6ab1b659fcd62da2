"""The domain error tree. The api maps each class to one HTTP status in one middleware.

LinkRiftError                      500  base; never raised directly
├── ValidationFailed               422  bad input; carries the field name
├── Unauthorized                   401  missing or bad credentials
├── Forbidden                      403  authenticated but not allowed
├── NotFound                       404
│   ├── LinkNotFound
│   └── WorkspaceNotFound
├── Conflict                       409
│   └── ShortCodeTaken
├── Gone                           410  expired or exhausted link
├── QuotaExceeded                  402  plan limit reached
├── RateLimited                    429  carries retry_after seconds
└── ServiceUnavailable             503  a backing service does not answer
"""

from __future__ import annotations


class LinkRiftError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code.replace("_", " ")
        self.field = field

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class ValidationFailed(LinkRiftError):
    status = 422
    code = "validation_failed"


class Unauthorized(LinkRiftError):
    status = 401
    code = "unauthorized"


class Forbidden(LinkRiftError):
    status = 403
    code = "forbidden"


class WorkspaceSuspended(Forbidden):
    code = "workspace_suspended"


class NotFound(LinkRiftError):
    status = 404
    code = "not_found"


class LinkNotFound(NotFound):
    code = "link_not_found"


class WorkspaceNotFound(NotFound):
    code = "workspace_not_found"


class Conflict(LinkRiftError):
    status = 409
    code = "conflict"


class ShortCodeTaken(Conflict):
    code = "short_code_taken"


class Gone(LinkRiftError):
    status = 410
    code = "gone"


class QuotaExceeded(LinkRiftError):
    status = 402
    code = "quota_exceeded"


class RateLimited(LinkRiftError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str = "", *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(LinkRiftError):
    status = 503
    code = "service_unavailable"
