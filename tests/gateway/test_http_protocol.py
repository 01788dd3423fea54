"""One write for what a connection writes in one step of the event loop (gateway.http_protocol,
issue 19), and nothing else changed: the bytes and their order, closing after what was written,
aborting without it; and a real server answers through it."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from gateway.http_protocol import CoalescingHttpToolsProtocol, CoalescingTransport


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


class TestCoalescingTransport:
    def test_writes_of_one_step_go_out_as_one_in_order(self) -> None:
        async def main() -> list[bytes]:
            fake = FakeTransport()
            t = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
            t.write(b"HTTP/1.1 200 OK\r\n\r\n")
            t.write(memoryview(b"body"))  # type: ignore[arg-type]
            assert fake.writes == []  # not yet: at the end of this step
            await asyncio.sleep(0)
            t.writelines([b"next ", b"step"])
            await asyncio.sleep(0)
            return fake.writes

        assert asyncio.run(main()) == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next step"]

    def test_close_sends_what_was_written_first_and_abort_does_not(self) -> None:
        async def main() -> tuple[FakeTransport, FakeTransport]:
            loop = asyncio.get_running_loop()
            closed, aborted = FakeTransport(), FakeTransport()
            for fake in (closed, aborted):
                t = CoalescingTransport(fake, loop)  # type: ignore[arg-type]
                t.write(b"last words")
                t.close() if fake is closed else t.abort()
            await asyncio.sleep(0)  # the scheduled flush finds nothing left
            return closed, aborted

        closed, aborted = asyncio.run(main())
        assert closed.writes == [b"last words"]
        assert closed.closed
        assert aborted.writes == []
        assert aborted.aborted

    def test_everything_else_is_the_transports(self) -> None:
        t = CoalescingTransport(FakeTransport(), None)  # type: ignore[arg-type]
        assert t.get_extra_info("peername") == "info peername"


def test_a_server_answers_through_it() -> None:
    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        assert scope["type"] == "http"
        body = scope["path"].encode()
        await send(  # type: ignore[operator]
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    async def main() -> list[bytes]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, http=CoalescingHttpToolsProtocol, lifespan="off", log_config=None
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for path in ("/one", "/two"):  # keep-alive: two answers on one connection
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            answers.append(await reader.readexactly(len(path)))
        writer.close()
        server.should_exit = True
        await task
        return answers

    assert asyncio.run(main()) == [b"/one", b"/two"]
