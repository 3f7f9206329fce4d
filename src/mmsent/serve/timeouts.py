"""A deadline for a request's line and headers, which uvicorn lacks (slow clients, "slowloris").

uvicorn times out only idle kept-alive connections (``timeout_keep_alive``): a client that opens a connection and
sends its request line and headers a byte at a time holds the connection, and a file descriptor, forever.
:class:`HeaderTimeoutProtocol` is uvicorn's h11 protocol that closes such a connection ``header_timeout`` seconds
after it opened, or after the first byte of the next request on a kept-alive one. Once the headers are in, the app
reads the body with its own deadline (``ServeSettings.body_timeout``, answered 408).

Run the app with :func:`uvicorn_config` (``mmsent serve`` does).
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("mmsent.serve")


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 (h11) protocol with a deadline for each request's line and headers.

    The deadline runs while no request of the connection is being handled: from the connection's start, or from the
    first byte after an answered request (the next request's headers, or the rest of a body the app answered early,
    e.g. with 413), and stops when a request's headers are complete.
    """

    header_timeout: float = 10.0  # seconds; set by :func:`header_timeout_protocol`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self.start_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.header_timer is None and self.between_requests():
            self.start_header_timer()  # the first bytes after an answered request
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a new request's headers are complete: the app now reads its body
            self.stop_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_header_timer()
        super().connection_lost(exc)

    def between_requests(self) -> bool:
        """No request of this connection is being handled: none came yet, or the last one is answered."""
        return self.cycle is None or self.cycle.response_complete

    def start_header_timer(self) -> None:
        self.stop_header_timer()
        self.header_timer = self.loop.call_later(self.header_timeout, self.header_timed_out)

    def stop_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def header_timed_out(self) -> None:
        self.header_timer = None
        if self.between_requests() and not self.transport.is_closing():
            # Closed without an answer, as nginx does at client_header_timeout: the client is likely not listening.
            logger.debug("closing %s: no complete request headers within %g s", self.client, self.header_timeout)
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """A :class:`HeaderTimeoutProtocol` subclass whose headers deadline is ``seconds`` (uvicorn takes a class)."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})


def uvicorn_config(app: FastAPI, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """How ``mmsent serve`` runs an app of :func:`mmsent.serve.create_app`: HTTP/1.1 with the headers deadline of the
    app's settings (``app.state.settings.header_timeout``)."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level,
                          http=header_timeout_protocol(app.state.settings.header_timeout))
