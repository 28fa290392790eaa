"""Run the service with uvicorn: in the foreground (``safetext serve``) or in a background thread.

:class:`BackgroundServer` serves an app on a loopback socket it binds itself (port 0 picks a free
port), for tests and the load benchmark; leaving the ``with`` block stops the server and joins the
thread.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def run_server(app: Any, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
               shutdown_timeout: float = 30.0) -> None:
    """Serve ``app`` with uvicorn in the foreground until SIGINT/SIGTERM, then shut down gracefully.

    On the signal uvicorn stops accepting connections and waits up to ``shutdown_timeout`` seconds for
    the open requests; then it cancels them, which cancels their generations at the next denoising
    step, and the app's shutdown stops the workers.

    Args:
        app: the ASGI app (from :func:`safetext.service.create_app`).
        host: interface to bind.
        port: port to bind.
        log_level: uvicorn's log level.
        shutdown_timeout: seconds open requests may take to finish after the signal.
    """
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=max(0.0, shutdown_timeout))
    uvicorn.Server(config).run()


class BackgroundServer:
    """An ASGI app served by uvicorn in a daemon thread.

    Args:
        app: the ASGI app (e.g. from :func:`safetext.service.create_app`).
        host: interface to bind (default loopback).
        port: port to bind; 0 picks a free one (read :attr:`url` afterwards).
        startup_timeout: seconds to wait for the app's startup (model loading) to finish.
        log_level: level of uvicorn's own loggers; their handlers are left to the application
            (uvicorn's logging configuration is not installed).
        shutdown_timeout: seconds open requests may take to finish when the server stops.

    Example:
        >>> with BackgroundServer(app) as server:  # doctest: +SKIP
        ...     httpx.get(server.url + "/healthz")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 120.0,
                 log_level: str = "warning", shutdown_timeout: float = 10.0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.shutdown_timeout = shutdown_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._socket is None:
            raise RuntimeError("the server is not running; use `with BackgroundServer(app) as server:`")
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> "BackgroundServer":
        """Bind, start the thread and wait until the app has started (raises if it did not)."""
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
        # TCP, and without it Nagle + delayed ACK add ~40 ms to every response.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, self.port))
        config = uvicorn.Config(self.app, log_config=None, log_level=self.log_level, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=self.shutdown_timeout)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True,
                                        name="safetext-service")
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._close_socket()
                raise RuntimeError("the service stopped during startup; see the log above for the cause")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the service did not start within {self.startup_timeout} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask uvicorn to exit, wait for the thread, close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the service thread did not stop within {timeout} s")
        self._close_socket()
        self._server = self._thread = None

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
