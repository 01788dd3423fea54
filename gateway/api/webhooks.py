"""The partner's webhook as OpenAPI 3.1 `webhooks`: what the gateway POSTs to a partner's
`--webhook-url` when a file is acknowledged or fails, and how to check its signature. Only
described here (`declare`); the worker's outbox sends them (gateway.worker.outbox)."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header
from pydantic import BaseModel, Field

from gateway.api.schemas import OutcomeName, StatusName


class WebhookEvent(BaseModel):
    event: Annotated[str, Field(description="acknowledged (acks stored) or failed (parked)")]
    id: str = Field(description="the interchange's id, as in the status API")
    status: StatusName
    outcome: OutcomeName | None
    sha256: str = Field(description="SHA-256 of the file as received")
    at: str = Field(description="when the event happened, UTC, ending in Z")


def declare(app: FastAPI) -> None:
    @app.webhooks.post(
        "interchange-event",
        operation_id="interchange_event",
        responses={200: {"description": "any 2xx: delivered; anything else is retried"}},
    )
    def interchange_event(
        body: WebhookEvent,
        x_edi834_signature: Annotated[
            str,
            Header(
                description="sha256=<hex HMAC-SHA256 of the exact body, keyed with the "
                "partner's webhook secret>; compare in constant time before trusting the body"
            ),
        ],
        x_edi834_signature_256: Annotated[
            str,
            Header(
                description="t=<unix seconds when sent>,v1=<hex HMAC-SHA256 of '<t>.' followed "
                "by the exact body, same secret>: refuse a t more than a few minutes old, and a "
                "captured call cannot be replayed later (each retry is signed at its own time)"
            ),
        ],
    ) -> None:
        """POSTed as JSON to the partner's webhook URL once a file is acknowledged (its TA1/999
        are stored) or parked as failed. Answer 2xx; anything else is retried with back-off
        (EDI834_WEBHOOK_MAX_ATTEMPTS), so the same event may arrive more than once: `id` and
        `event` identify it."""
