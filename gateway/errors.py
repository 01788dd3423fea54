"""One error family for the service, rendered by one handler as `{"error": message}`."""

from __future__ import annotations


class GatewayError(Exception):
    def __init__(
        self, message: str, status_code: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.headers = headers or {}


class NotFound(GatewayError):
    def __init__(self, what: str = "interchange") -> None:
        super().__init__(f"no such {what}", 404)
