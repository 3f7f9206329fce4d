"""A bound on the memory all requests in flight hold together.

Every request takes a :class:`Hold` on the server's :class:`MemoryBudget` (the :class:`MemoryBudgetMiddleware` gives
each one its own and frees it when the response is sent). The request grows its hold before it holds the memory:
by its body (from ``Content-Length`` before a byte is read, or chunk by chunk as a chunked body streams in) and by its
images' decoded size (from their headers, before decoding). A request that would pass the budget is answered 503 with
``Retry-After``, or 413 when it needs more than the whole budget (waiting cannot help it).
"""

from __future__ import annotations

import threading
from fastapi import FastAPI, HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

# A body is held about three times over: the bytes read, their parsed form (JSON strings, or the multipart parser's
# file part) and the decoded image files (base64 decoded, or the part read out).
BODY_COPIES = 3
# A decoded image is RGB, one byte per channel (16-bit and transparent images are converted in row blocks or once).
DECODED_BYTES_PER_PIXEL = 3
# Seconds a client refused for a busy budget is asked to wait: the requests in flight finish within seconds.
RETRY_AFTER_S = 1
_HOLD_KEY = "memory_hold"  # where the middleware leaves a request's hold in its ASGI scope state


class OverBudget(Exception):
    """Raised by :meth:`Hold.grow` when the budget cannot take ``wanted`` more bytes."""

    def __init__(self, wanted: int, held: int, in_use: int, limit: int) -> None:
        super().__init__(f"{wanted:,} more bytes wanted, {in_use:,} of {limit:,} in use")
        self.wanted, self.held, self.in_use, self.limit = wanted, held, in_use, limit

    @property
    def never_fits(self) -> bool:
        """True when the request needs more than the whole budget: retrying cannot help."""
        return self.held + self.wanted > self.limit


class MemoryBudget:
    """Bytes all requests in flight may hold together; thread-safe (images are decoded in worker threads)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self.peak = 0  # the most ever held at once (for tests and the benchmark)
        self._lock = threading.Lock()

    def hold(self) -> Hold:
        """A new, empty hold for one request."""
        return Hold(self)

    def take(self, nbytes: int, held: int) -> None:
        """Adds ``nbytes`` to the bytes in use, or raises :class:`OverBudget` (``held``: the caller's share so far)."""
        with self._lock:
            if self.in_use + nbytes > self.limit:
                raise OverBudget(nbytes, held, self.in_use, self.limit)
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)

    def give_back(self, nbytes: int) -> None:
        with self._lock:
            self.in_use -= nbytes


class Hold:
    """One request's share of a :class:`MemoryBudget`; :meth:`release` returns it all."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.size = 0

    def grow(self, nbytes: int) -> None:
        """Takes ``nbytes`` more, or raises :class:`OverBudget` and takes nothing."""
        if nbytes <= 0:
            return
        self.budget.take(nbytes, self.size)
        self.size += nbytes

    def release(self) -> None:
        self.budget.give_back(self.size)
        self.size = 0


class MemoryBudgetMiddleware:
    """Gives each HTTP request a hold on ``budget`` (see :func:`memory_hold`) and releases it after the response."""

    def __init__(self, app: ASGIApp, budget: MemoryBudget) -> None:
        self.app, self.budget = app, budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hold = self.budget.hold()
        scope.setdefault("state", {})[_HOLD_KEY] = hold
        try:
            await self.app(scope, receive, send)
        finally:  # also when the handler failed or the client went away
            hold.release()


def memory_hold(request: Request) -> Hold:
    """The request's hold (given by :class:`MemoryBudgetMiddleware`)."""
    return getattr(request.state, _HOLD_KEY)


def reserve(hold: Hold, nbytes: int, what: str) -> None:
    """Grows ``hold`` by ``nbytes``; 503 with ``Retry-After`` while other requests hold the budget, 413 when the
    request alone needs more than all of it. ``what`` names the memory in the message."""
    try:
        hold.grow(nbytes)
    except OverBudget as exc:
        if exc.never_fits:
            raise HTTPException(413, f"{what} needs {exc.held + exc.wanted:,} bytes of memory in all, over this "
                                f"server's memory budget of {exc.limit:,} bytes; send fewer or smaller images") from exc
        raise HTTPException(503, f"server busy: {what} needs {exc.wanted:,} bytes of memory, and requests in flight "
                            f"hold {exc.in_use:,} of the {exc.limit:,} budget; retry in {RETRY_AFTER_S} s",
                            headers={"Retry-After": str(RETRY_AFTER_S)}) from exc


def limit_memory(app: FastAPI, limit: int) -> MemoryBudget:
    """Puts a budget of ``limit`` bytes on ``app`` (before it starts): ``app.state.memory_budget``."""
    budget = MemoryBudget(limit)
    app.state.memory_budget = budget
    app.add_middleware(MemoryBudgetMiddleware, budget=budget)
    return budget
