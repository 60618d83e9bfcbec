"""An ASGI app served by uvicorn in a background thread on loopback: fakes, tests and benchmarks."""

from __future__ import annotations

import threading
import time
from typing import Any, Self

import uvicorn


class LoopbackServer:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one) in a daemon thread until stopped."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "loopback") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                access_log=False,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving and wait until the socket listens; the real port is known afterwards."""
        self._thread = threading.Thread(target=self._server.run, name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and join its thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
