"""The partner API's hot routes without FastAPI's per-request machinery (issue 19). A route keeps
its declaration — signature, dependencies, parameters, responses — so the OpenAPI document and
every answer FastAPI gives stay its own; in front of it sits a fast path, `async def
fast(request) -> Response | None`, that answers the requests needing nothing of that machinery
(a remembered API key, headers FastAPI would take as they are) and returns None for any other,
which then goes through the route as declared (401, 422, a key looked up, …). The fast path
runs inside the same middlewares, router and exception handlers, so metrics, problems and
headers are the same either way.

`in_thread` is the fast paths' trip to a worker thread: a plain executor, about a third of the
CPU of anyio's `to_thread` (Starlette's threadpool) per trip."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

P = ParamSpec("P")
T = TypeVar("T")
FastPath = Callable[[Request], Awaitable[Response | None]]


def install_fast_path(app: FastAPI, endpoint: Callable[..., Any], fast: FastPath) -> None:
    """Put `fast` in front of the app's route for `endpoint` (a route's ASGI app is what the
    router calls once the path and method matched)."""
    routes = [r for r in app.routes if isinstance(r, APIRoute) and r.endpoint is endpoint]
    if len(routes) != 1:
        raise LookupError(f"one route for {endpoint.__name__}, found {len(routes)}")
    route = routes[0]
    declared = route.app

    async def lean(scope: Scope, receive: Receive, send: Send) -> None:
        response = await fast(Request(scope, receive, send))
        if response is None:
            await declared(scope, receive, send)
        else:
            await response(scope, receive, send)

    route.app = lean


def add_threads(app: FastAPI, size: int) -> None:
    """The app's executor for `in_thread`: at most `size` threads, and at most 4 a CPU, each
    started when first needed. The fast paths' work in a thread is a round trip to the database
    (and a received file's fsyncs); more threads than that only contend for the GIL: on this
    project's 2-core machine 6 or 12 threads took 14-15% less API CPU per status read and per
    received file than 40, at the same throughput (issue 19)."""
    workers = min(size, 4 * (os.cpu_count() or 1))
    app.state.lean_threads = ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="edi834-api"
    )


async def in_thread(request: Request, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`func(*args, **kwargs)` in one of the app's threads (`add_threads`), in a copy of this
    context (as asyncio.to_thread)."""
    executor: ThreadPoolExecutor = request.app.state.lean_threads
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, call)
