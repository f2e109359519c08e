"""An AsrServer on an event loop thread of its own, for tests, benchmarks and embedding.

    engine = load_engine("/path/asr", ServerOptions())
    with ServerThread(ServerOptions(port=0), {"asr": engine}, load_aligner("/path/aligner")) as server:
        client = StreamingClient(server.address)
        ...
    # leaving the block stops the server gracefully (the engines keep running)
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, Mapping

from ..engine.aligner import ForcedAligner
from ..engine.text_layer import StreamingEngine
from ..server.app import AsrServer
from ..server.loading import load_aligner, load_engine
from ..server.options import ServerOptions

__all__ = ["ServerThread", "load_aligner", "load_engine"]  # loading is the server's, re-exported for tests


class ServerThread:
    def __init__(self, options: ServerOptions, engines: Mapping[str, StreamingEngine],
                 aligner: ForcedAligner | None = None, speakers=None) -> None:
        self.options = options
        self._engines, self._aligner, self._speakers = engines, aligner, speakers
        self.server: AsrServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port: int | None = None
        self._thread: threading.Thread | None = None
        self._ready: Future = Future()
        self._done: asyncio.Event | None = None

    @property
    def address(self) -> str:
        host = self.options.host
        host = "127.0.0.1" if host in ("0.0.0.0", "[::]", "::") else host
        return f"{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self._thread = threading.Thread(target=self._main, name="asr-server", daemon=True)
        self._thread.start()
        self.port = self._ready.result(timeout)
        return self

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        try:
            self.server = AsrServer(self.options, self._engines, self._aligner, self._speakers)
            port = await self.server.start()
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._ready.set_exception(exc)
            return
        self._ready.set_result(port)
        await self._done.wait()

    def run(self, make: Callable[[], Awaitable[Any]], timeout: float | None = 60.0) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)

    def stop(self, grace_s: float | None = None, timeout: float = 60.0) -> None:
        """Graceful stop (as on SIGTERM), then the thread ends."""
        if self._thread is None or not self._thread.is_alive():
            return
        self.run(lambda: self.server.stop(grace_s), timeout)
        self.loop.call_soon_threadsafe(self._done.set)
        self._thread.join(timeout)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
