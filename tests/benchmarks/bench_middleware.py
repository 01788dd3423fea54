"""The CPU each of the API's own ASGI middlewares adds to a request, in process: a bare ASGI
app answering a GET, called directly and through the middleware, N calls each, three rounds.
What it measures is the middleware's code alone (no server, no framework); the API's CPU per
request (0.35 ms for `/healthz`, ~0.75 ms a status read: see the README) is the scale."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.web import ApiHeaders, HeadAsGet

HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"512")]


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"{}"})


async def _send(message: Message) -> None:
    return None


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


async def per_call(app: ASGIApp, n: int) -> float:
    """CPU µs a call."""
    scope: Scope = {"type": "http", "scheme": "http", "method": "GET", "path": "/healthz",
                    "app": None}  # fmt: skip
    start = time.process_time()
    for _ in range(n):
        await app(scope, _receive, _send)
    return (time.process_time() - start) / n * 1e6


def _head_as_get(app: ASGIApp) -> ASGIApp:
    # A GET scope: HeadAsGet's own test is one comparison (a HEAD looks up the routes).
    return HeadAsGet(app)


async def main(n: int) -> None:
    wrapped: dict[str, Callable[[ASGIApp], ASGIApp]] = {
        "ApiHeaders": ApiHeaders,
        "HeadAsGet (a GET)": _head_as_get,
    }
    print(f"| middleware | bare call, µs | through it, µs | added, µs |  ({n:,} calls a round)")
    print("|---|---:|---:|---:|")
    for name, wrap in wrapped.items():
        for _ in range(3):
            plain = await per_call(bare, n)
            through = await per_call(wrap(bare), n)
            print(f"| {name} | {plain:.2f} | {through:.2f} | {through - plain:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().calls))
