"""One error family for the service. The partner API renders it as an RFC 9457 problem
(`gateway.api.problems`), the dashboard as a page, the CLI as a line; `code` is the stable,
machine-readable name of the error (the problem's `code` and the end of its `type`)."""

from __future__ import annotations

# The code of an error that names none, by HTTP status.
DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
    507: "storage_unavailable",
}


def default_code(status_code: int) -> str:
    return DEFAULT_CODES.get(status_code, "error")


class GatewayError(Exception):
    def __init__(
        self,
        message: str,
        status_code: int = 400,
        headers: dict[str, str] | None = None,
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.headers = headers or {}
        self.code = code or default_code(status_code)


class IdempotencyKeyReused(GatewayError):
    """The partner's Idempotency-Key already names other bytes, within its window."""

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was used for a different file within the last 24 hours: "
            "use a new key for a new file",
            422,
            code="idempotency_key_reused",
        )


class NotFound(GatewayError):
    def __init__(self, what: str = "interchange") -> None:
        super().__init__(f"no such {what}", 404)
