"""What stands between the network and the routes of qa/api.py, besides Starlette's Host-header check:
the body-read timeout, the admin token, the JSON-body rule for administrative requests, and error
messages that say what is wrong without naming a server path or an exception class.

Public API: :class:`BodyReadTimeout` (middleware), :func:`uvicorn_options` (uvicorn's keep-alive timeout and
a protocol that bounds the request head), :func:`host_patterns`, :func:`require_admin` and
:func:`require_json_body` (route dependencies), :func:`public_error` (an exception in words a client
can use). The admin token is read from ``app.state.settings`` (set by ``qa.api.create_app``).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Annotated

import anyio
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from qa.config import Settings

LOG_HINT = "the server log has the details"


# -- errors a client may see ---------------------------------------------------------------------------


def public_error(exc: BaseException) -> str:
    """What a client is told about a failure to open the engine: the kind of problem, never the exception's
    own message (it names files on the server) nor its class; the log keeps both."""
    from qa.index import IndexUnavailable

    if isinstance(exc, FileNotFoundError):
        what = "the corpus folder or a file of the index is missing"
    elif isinstance(exc, IndexUnavailable):
        what = "the index cannot be used as it is"
    elif isinstance(exc, PermissionError):
        what = "the server may not read the corpus or the index"
    else:
        what = "the engine could not be opened"
    return f"{what} ({LOG_HINT})"


# -- Host header ---------------------------------------------------------------------------------------


def host_patterns(allowed_hosts: list[str]) -> list[str]:
    """``Settings.allowed_hosts`` as Starlette's TrustedHostMiddleware matches them: an IPv6 address in
    brackets, as it comes in a Host header (``[::1]:8000``)."""
    return [f"[{host}]" if ":" in host and not host.startswith("[") else host for host in allowed_hosts]


# -- stalled request bodies ----------------------------------------------------------------------------


class BodyReadTimedOut(HTTPException):
    def __init__(self, seconds: float):
        super().__init__(status.HTTP_408_REQUEST_TIMEOUT, f"no part of the request body came for {seconds:g} s",
                         headers={"Connection": "close"})


class BodyReadTimeout:
    """ASGI middleware: each wait for the next part of a request body is bounded by ``seconds``. uvicorn
    times out idle keep-alive connections but not a body that stops half way, which would otherwise hold
    its connection (and a request slot) for as long as the client likes. On a timeout the request is
    answered 408 with ``Connection: close``, so the server closes the connection after the response."""

    def __init__(self, app: ASGIApp, seconds: float):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = body_read = False

        async def bounded_receive() -> Message:
            nonlocal body_read
            if body_read:  # later calls wait for the client to go away (streamed responses): not bounded
                return await receive()
            try:
                with anyio.fail_after(self.seconds):
                    message = await receive()
            except TimeoutError:
                raise BodyReadTimedOut(self.seconds) from None  # FastAPI turns it into the 408 response
            body_read = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, watched_send)
        except BodyReadTimedOut as exc:  # raised where nothing turned it into a response
            if not started:
                await send({"type": "http.response.start", "status": exc.status_code,
                            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": b'{"detail": "%s"}' % exc.detail.encode()})


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


# -- administrative routes -----------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="the server's QA_ADMIN_TOKEN")


def require_admin(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Route dependency: the request carries ``Authorization: Bearer <QA_ADMIN_TOKEN>``. 403 when the server
    has no token (administrative requests are then refused), 401 without the token or with a wrong one.
    The comparison takes the same time whatever the first differing character."""
    token = request.app.state.settings.admin_token
    if token is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "administrative requests are disabled: the server has "
                                                       "no admin token (QA_ADMIN_TOKEN)")
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "a valid admin token is required "
                                                          "(Authorization: Bearer …)",
                            headers={"WWW-Authenticate": "Bearer"})


def require_json_body(request: Request) -> None:
    """Route dependency: the body is declared JSON. A browser sends a cross-origin POST without asking the
    server first only as a form or ``text/plain``, so requiring ``application/json`` keeps another site's
    page from triggering the route with a user's ambient credentials."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "the body must be JSON "
                                                                     "(Content-Type: application/json)")


AdminDep = Annotated[None, Depends(require_admin)]
JsonBodyDep = Annotated[None, Depends(require_json_body)]

__all__ = ["AdminDep", "BodyReadTimedOut", "BodyReadTimeout", "JsonBodyDep", "head_timeout_protocol", "host_patterns", "public_error",
           "require_admin", "require_json_body", "uvicorn_options"]
