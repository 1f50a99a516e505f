"""HTTP routes that change the corpus: ``PUT /documents/{id}`` and ``DELETE /documents/{id}``.

Enabled only when ``Settings.admin_token`` is set; a request must then carry ``Authorization: Bearer
<token>`` (``qa.api.security.require_admin``). Without a configured token they answer 403, so a client can
tell "updates are off here" (403) from "wrong or missing token" (401). A document id is its path in the
corpus folder (``news/2026/storm.txt``); records of a ``.jsonl`` file are changed by changing that file. Each route returns once the change is
on disk and the engine in service answers from it; the work is :class:`qa.updates.Updater`'s.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Request, Response, status
from pydantic import BaseModel, Field

from qa.api.security import require_admin
from qa.updates import BadDocument, UnknownDocument, UploadTooLarge, Updater, UpdateResult


class DocumentUpdated(BaseModel):
    doc_id: str
    created: bool = Field(description="true: a new document; false: an existing one was replaced or deleted")
    build: str = Field(description="the index build now answering questions (in this worker process; the "
                                   "others load it within `follow_seconds`)")
    documents: int
    sentences: int


class DocumentUpload(BaseModel):
    """The JSON form of an upload (``text/plain`` sends the document's text as the body instead)."""

    text: str
    title: str | None = Field(None, description="one line; becomes the document's headline")


def updater_of_app(app) -> Updater:
    """The app's updater, made on first use over its engine holder (``app.state.qa``)."""
    updater = getattr(app.state, "updater", None)
    if updater is None:
        updater = app.state.updater = Updater(app.state.qa)
    return updater


DocId = Annotated[str, PathParam(min_length=1, max_length=255, description="the document's path in the corpus "
                                 "folder, e.g. report-2026-12-03.txt or news/2026/storm.html")]
Admin = Depends(require_admin)
ERRORS = {401: {"description": "missing or wrong admin token"},
          403: {"description": "document updates are disabled (no admin token configured)"},
          413: {"description": "the document is larger than QA_MAX_DOCUMENT_BYTES"},
          422: {"description": "a bad id or a document that cannot be read (not UTF-8, binary, empty)"},
          503: {"description": "the engine is still loading"}}


async def _apply(request: Request, work) -> UpdateResult:
    updater = updater_of_app(request.app)
    if request.app.state.qa.engine is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the engine is still loading",
                            headers={"Retry-After": "5"})
    try:
        return await anyio.to_thread.run_sync(work, updater)
    except UploadTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from None
    except BadDocument as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except UnknownDocument:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such document") from None
    except ValueError as exc:  # the corpus as changed cannot be indexed (e.g. no document left); undone
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


async def put_document(doc_id: DocId, request: Request, response: Response) -> DocumentUpdated:
    """Add or replace a document: stored in the corpus folder (atomically, durably) and indexed before the
    answer, so the next question can be answered from it."""
    body = await request.body()
    content_type = request.headers.get("content-type", "text/plain")
    result = await _apply(request, lambda u: u.put(doc_id, body, content_type))
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return DocumentUpdated(**vars(result))


async def delete_document(doc_id: DocId, request: Request) -> DocumentUpdated:
    """Remove a document from the corpus folder and the index."""
    return DocumentUpdated(**vars(await _apply(request, lambda u: u.delete(doc_id))))


def add_document_routes(app: FastAPI) -> None:
    """Register PUT and DELETE /documents/{doc_id} on ``app`` (as its own routes, beside GET, so that a 405
    at the path lists every method)."""
    app.put("/documents/{doc_id:path}", response_model=DocumentUpdated, dependencies=[Admin], tags=["documents"],
            responses={201: {"model": DocumentUpdated, "description": "created"}, **ERRORS},
            openapi_extra={"requestBody": {"required": True, "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": DocumentUpload.model_json_schema()}}}})(put_document)
    app.delete("/documents/{doc_id:path}", response_model=DocumentUpdated, dependencies=[Admin], tags=["documents"],
               responses={404: {"description": "no such document"},
                          409: {"description": "the corpus would have no document left"}, **ERRORS})(delete_document)
