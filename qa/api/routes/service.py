"""The service itself: ``/health``, ``POST /admin/reload`` (on its own router, included only when reloads are
allowed), the chat page at ``/`` with its files under ``/static``, and the API docs at ``/docs`` with
Swagger UI's files under ``/docs-assets`` (from the swagger-ui-bundle-v2 package, so they work offline)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from qa import index as index_mod
from qa.api.errors import BAD_INPUT, error_response
from qa.api.schemas import Health, ReloadRequest, ReloadStarted
from qa.api.security import AdminDep, JsonBodyDep
from qa.api.state import StateDep

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
DOCS_ASSETS = "/docs-assets"
PAGE_HEADERS = {
    # The chat page loads only its own files and renders document text as text, never as HTML.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["service"])
admin_router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health,
            responses={503: {"model": Health, "description": "not ready: loading, or the load failed"}})
def health(state: StateDep, response: Response) -> Health:
    """Whether the service answers questions, and from which index (503 while not ready)."""
    engine = state.engine
    if engine is None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="error" if state.error else "loading", ready=False, reloading=state.busy,
                      updating=index_mod.build_running(state.settings.index_dir()), error=state.error)
    m = engine.index.manifest
    return Health(status="ready", ready=True, reloading=state.busy,
                  updating=index_mod.build_running(state.settings.index_dir()), model=m.get("model"),
                  corpus_fingerprint=m.get("corpus_fingerprint"), documents=m.get("documents"),
                  sentences=m.get("sentences"), passages=m.get("passages"), skipped=m.get("skipped"),
                  index_built_at=m.get("built_at"),
                  index_build_seconds=m.get("build_seconds"), engine_loaded_at=state.loaded_at, error=state.error)


@admin_router.post("/admin/reload", status_code=202, response_model=ReloadStarted,
                   responses={409: error_response("a reload is already running"),
                              401: error_response("no or a wrong admin token"),
                              403: error_response("the server has no admin token"),
                              415: error_response("the body is not JSON"), **BAD_INPUT})
def reload(state: StateDep, _admin: AdminDep, _json: JsonBodyDep, body: ReloadRequest) -> ReloadStarted:
    """Reopen the index (rebuilding it if the corpus changed) in the background; the old one keeps answering
    until the new one is swapped in. Poll /health: `reloading` turns false, `corpus_fingerprint` changes.
    Needs `Authorization: Bearer <QA_ADMIN_TOKEN>` and the JSON body `{}`."""
    if not state.start_loading():
        raise HTTPException(status.HTTP_409_CONFLICT, "a reload is already running")
    return ReloadStarted(detail="reload started")


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


@router.get("/docs", include_in_schema=False)
def api_docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(openapi_url=root + request.app.openapi_url, title="qa — API docs",
                               swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png")


def swagger_ui_dir() -> Path:
    """Swagger UI's files as the ``swagger-ui-bundle-v2`` package installs them: /docs works offline."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path)


def mount_assets(app: FastAPI) -> None:
    """The chat page's and Swagger UI's files (mounts, which an APIRouter does not carry into an app)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_dir()), name="docs-assets")
