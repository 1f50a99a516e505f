"""ASGI middleware that bounds what a client may send and keeps errors inside the app, and the uvicorn
options that bound a connection before the app sees it.

These wrap the whole app rather than single routes: a limit or an error boundary that a route could forget
is no limit. ``qa.api.app.create_app`` adds them (outermost first): Starlette's Host check,
:class:`ErrorBoundary`, :class:`BodySizeLimit`, :class:`BodyReadTimeout`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING

import anyio
from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from qa.config import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class _WatchedSend:
    """An ASGI ``send`` that remembers whether the response has started (then no error response can follow)."""

    def __init__(self, send: Send):
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


async def _send_json(send: Send, status_code: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


# -- errors that escape the routes ---------------------------------------------------------------------


class ErrorBoundary:
    """The last exception handler: any error that escapes a route becomes a JSON 500 with an error id and no
    traceback, and is logged with its traceback. (Starlette's own ``exception_handler(Exception)`` re-raises
    the error to the server after answering, which logs it twice and breaks TestClient; this does not.)"""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watched = _WatchedSend(send)
        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            log.error("unexpected error %s in %s %s", error_id, scope.get("method"), scope.get("path"), exc_info=exc)
            if not watched.started:
                await _send_json(send, 500, {"detail": "internal error", "error_id": error_id})


# -- request bodies: size ------------------------------------------------------------------------------


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, f"request body larger than {limit} bytes")


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413: at once from Content-Length, and by counting
    the bytes of a streamed (chunked) body as the application reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, upload_bytes: int | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or max_bytes  # PUT /documents/…: a whole document

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_bytes if scope["method"] == "PUT" else self.max_bytes
        declared = [v for k, v in scope["headers"] if k == b"content-length"]
        if declared:
            try:
                size = int(declared[0])
            except ValueError:
                await _send_json(send, 400, {"detail": "invalid Content-Length"})
                return
            if size > limit:
                await _send_json(send, 413, {"detail": BodyTooLarge(limit).detail})
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)  # FastAPI turns it into the 413 response
            return message

        watched = _WatchedSend(send)
        try:
            await self.app(scope, counting_receive, watched)
        except BodyTooLarge as exc:  # raised where nothing turned it into a response
            if not watched.started:
                await _send_json(send, 413, {"detail": exc.detail})


# -- request bodies: stalls ----------------------------------------------------------------------------


class BodyReadTimedOut(HTTPException):
    def __init__(self, detail: str):
        super().__init__(status.HTTP_408_REQUEST_TIMEOUT, detail, headers={"Connection": "close"})


class BodyReadTimeout:
    """ASGI middleware: each wait for the next part of a request body is bounded by ``seconds``, and the
    whole body by ``deadline`` seconds from the first wait. uvicorn times out idle keep-alive connections but
    not a body that stops half way or trickles in a byte at a time, which would otherwise hold its connection
    (and a request slot) for as long as the client likes. On a timeout the request is answered 408 with
    ``Connection: close``, so the server closes the connection after the response."""

    def __init__(self, app: ASGIApp, seconds: float, deadline: float | None = None):
        self.app, self.seconds, self.deadline = app, seconds, deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_read = False
        ends_at: float | None = None

        async def bounded_receive() -> Message:
            nonlocal body_read, ends_at
            if body_read:  # later calls wait for the client to go away (streamed responses): not bounded
                return await receive()
            now = anyio.current_time()
            if ends_at is None and self.deadline is not None:
                ends_at = now + self.deadline
            wait = self.seconds if ends_at is None else min(self.seconds, ends_at - now)
            try:
                with anyio.fail_after(max(wait, 0.0)):
                    message = await receive()
            except TimeoutError:
                if wait < self.seconds:
                    raise BodyReadTimedOut(f"the request body did not arrive within {self.deadline:g} s") from None
                raise BodyReadTimedOut(f"no part of the request body came for {self.seconds:g} s") from None
            body_read = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        watched = _WatchedSend(send)
        try:
            await self.app(scope, bounded_receive, watched)
        except BodyReadTimedOut as exc:  # raised where nothing turned it into a response
            if not watched.started:
                await send({"type": "http.response.start", "status": exc.status_code,
                            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": json.dumps({"detail": exc.detail}).encode()})


# -- stalled request heads (uvicorn) --------------------------------------------------------------------


def head_timeout_protocol(seconds: float) -> type:
    """uvicorn's httptools protocol, with each request's line and headers bounded by ``seconds`` from the
    connection's start or the request's first byte: uvicorn bounds neither (a connection that sends
    nothing, or half a header, stays open for as long as the client likes). Pass it as ``http=``."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeadTimeoutProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(seconds, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeadTimeoutProtocol


def uvicorn_options(settings: "Settings") -> dict:
    """The uvicorn.Config arguments that bound how long a connection may idle or stall."""
    return {"timeout_keep_alive": settings.keep_alive_timeout_s, "http": head_timeout_protocol(settings.body_timeout_s)}
