"""A TCP proxy of our own that can blackhole traffic: the fault a dead process can't show.

A crashed Redis refuses connections at once, which every client handles
quickly. A Redis behind a broken network, or a stalled host, answers
nothing: connections open but no byte comes back, and every client waits
for its own timeout. `make chaos` and the tests put this proxy between the
services and Redis to produce exactly that:

    proxy = FaultProxy(upstream_port=6379)   # listens on proxy.port
    proxy.start()
    proxy.blackhole(True)    # bytes stop flowing both ways; connections stay open
    proxy.blackhole(False)   # what was held is delivered, as TCP retransmission would
    proxy.stop()

Held bytes are delivered afterwards rather than dropped: TCP retransmits
dropped packets, so a client that is still waiting gets its reply late,
never a corrupted stream. It runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self._flowing: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve(ready))
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("the fault proxy did not start")

    async def _serve(self, ready: threading.Event) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.port = listener.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=listener)
        ready.set()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        self._connections |= {client_writer, upstream_writer}
        await asyncio.gather(self._pump(client_reader, upstream_writer), self._pump(upstream_reader, client_writer))
        self._connections -= {client_writer, upstream_writer}

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while chunk := await reader.read(65536):
                await self._flowing.wait()  # blackholed: hold it, as the network would
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def blackhole(self, on: bool) -> None:
        """Stops (on) or resumes (off) every byte through the proxy."""
        assert self._loop is not None and self._flowing is not None
        flowing = self._flowing
        self._loop.call_soon_threadsafe(flowing.clear if on else flowing.set)

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._connections):
                writer.close()

        asyncio.run_coroutine_threadsafe(close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None
