"""Who may ask what: the Host names the server answers to, the admin token, and the JSON-body rule for
administrative requests. Route dependencies, so a route states its guard in its signature.

The admin token is read from ``app.state.settings`` (set by ``qa.api.app.create_app``).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer


def host_patterns(allowed_hosts: list[str]) -> list[str]:
    """``Settings.allowed_hosts`` as Starlette's TrustedHostMiddleware matches them: an IPv6 address in
    brackets, as it comes in a Host header (``[::1]:8000``)."""
    return [f"[{host}]" if ":" in host and not host.startswith("[") else host for host in allowed_hosts]


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
