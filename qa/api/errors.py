"""How errors look to a client: every one a JSON object with a ``detail`` message that names no server path,
documented in the OpenAPI schema of the routes that can answer it.

The handlers here are registered by ``qa.api.app.create_app``; an error no handler turns into a response
is the business of :class:`qa.api.middleware.ErrorBoundary`.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import HTTPException, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from qa.api.middleware import MAX_BODY_BYTES
from qa.api.schemas import ErrorItem, ErrorOut

LOG_HINT = "the server log has the details"


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


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, what)


# -- documented error responses (a route's ``responses=``) ----------------------------------------------


def error_response(description: str) -> dict:
    return {"model": ErrorOut, "description": description}


NOT_READY = {503: error_response("the engine is still loading, or could not be loaded (see /health)")}
BAD_INPUT = {422: error_response("invalid request"),
             413: error_response(f"request body larger than {MAX_BODY_BYTES} bytes"),
             400: error_response("the body cannot be read (not UTF-8, or an invalid Content-Length)"),
             408: error_response("the body stopped arriving (the connection is closed)")}


# -- exception handlers --------------------------------------------------------------------------------


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's JSON error, with an ``Allow`` header on 405 that lists the methods of every route at the path
    (Starlette lists only those of the first route it matched, e.g. GET but not DELETE)."""
    if exc.status_code == 405:
        allowed: set[str] = set()
        for route in _every_route(request.app.router.routes):
            match, _ = route.matches(request.scope)
            if match != Match.NONE and getattr(route, "methods", None):
                allowed |= route.methods
        if allowed:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
    return await http_exception_handler(request, exc)


def _every_route(routes: list) -> Iterable:
    """The app's routes with those of its included routers: newer FastAPI keeps an included router as one
    route of the app (``fastapi.routing.iter_route_contexts`` looks inside), older versions copy its routes."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return routes
    return iter_route_contexts(routes)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable message (and the details per field), never echoing the input back."""
    items = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p != "body"] or ["body"]
        if e.get("type") == "json_invalid":
            msg = f"malformed JSON: {e.get('ctx', {}).get('error', 'cannot be parsed')}"
            loc = ["body"]
        elif e.get("type") == "value_error":
            msg = str(e.get("ctx", {}).get("error", e.get("msg")))
        else:
            msg = e.get("msg", "invalid")
        items.append(ErrorItem(field=".".join(loc), message=msg))
    detail = "; ".join(f"{i.field}: {i.message}" for i in items) or "invalid request"
    return JSONResponse(status_code=422, content=ErrorOut(detail=detail, errors=items).model_dump(exclude_none=True))
