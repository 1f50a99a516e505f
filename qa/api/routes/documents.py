"""``/documents``: the documents of the index in service (GET), the files it skipped (GET
``/documents/skipped``), and the routes that change the corpus (PUT, DELETE).

A document id is its path in the corpus folder (``news/2026/storm.txt``); records of a ``.jsonl`` file are
changed by changing that file. PUT and DELETE need ``Authorization: Bearer <token>``
(:func:`qa.api.security.require_admin`); without a configured token they answer 403, so a client can tell
"updates are off here" (403) from "wrong or missing token" (401). Each returns once the change is on disk
and the engine in service answers from it; the work is :class:`qa.updates.Updater`'s. The routes are on
one router, so a 405 at a document's path lists every method.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, HTTPException, Path as PathParam, Request, Response, status
from starlette.convertors import PathConvertor, register_url_convertor

from qa.api.errors import NOT_READY, error_response, not_found
from qa.api.schemas import DocumentList, DocumentOut, DocumentUpdated, DocumentUpload, SentenceOut, SkippedFile
from qa.api.security import require_admin
from qa.api.state import EngineDep, catalog, updater_of_app
from qa.conversation import MAX_ID_CHARS
from qa.updates import BadDocument, UnknownDocument, UploadTooLarge, UpdateResult

router = APIRouter(tags=["documents"])


class DocumentIdConvertor(PathConvertor):
    """A document id in a path: anything (slashes included) but "skipped", which is ``GET /documents/skipped``
    and never a document (ids end with a suffix), so that the other methods do not claim that path too."""

    regex = r"(?!skipped$).+"


register_url_convertor("document", DocumentIdConvertor())

DocId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_CHARS, description="e.g. 000_f45c79c16f6a0511.txt")]
UpdatedDocId = Annotated[str, PathParam(min_length=1, max_length=255, description="the document's path in the "
                                        "corpus folder, e.g. report-2026-12-03.txt or news/2026/storm.html")]
UPDATE_ERRORS = {401: {"description": "missing or wrong admin token"},
                 403: {"description": "document updates are disabled (no admin token configured)"},
                 413: {"description": "the document is larger than QA_MAX_DOCUMENT_BYTES"},
                 422: {"description": "a bad id or a document that cannot be read (not UTF-8, binary, empty)"},
                 503: {"description": "the engine is still loading"}}


@router.get("/documents", response_model=DocumentList, responses=NOT_READY)
def list_documents(engine: EngineDep) -> DocumentList:
    """The documents of the corpus."""
    return catalog(engine).listing


@router.get("/documents/skipped", response_model=list[SkippedFile], responses=NOT_READY)
def list_skipped(engine: EngineDep) -> list[SkippedFile]:
    """The files of the corpus folder that are not indexed, each with its reason (unsupported type, no text
    layer, encrypted, damaged, empty, too big, not UTF-8, link out of the folder, …), as of the index in
    service. Declared before ``/documents/{doc_id}``; no document id is "skipped" (ids end with a suffix)."""
    return catalog(engine).skipped


@router.get("/documents/{doc_id:document}", response_model=DocumentOut,
            responses={404: error_response("unknown document"), 422: error_response("invalid id"), **NOT_READY})
def get_document(doc_id: DocId, engine: EngineDep) -> DocumentOut:
    """A document's raw text and its sentences with offsets, to show a cited sentence in place."""
    doc = engine.index.documents.get(doc_id)  # a lookup in the loaded index, never a file path
    if doc is None:
        raise not_found(f"no document {doc_id!r}")
    first, last = catalog(engine).ranges.get(doc_id, (0, 0))
    return DocumentOut(doc_id=doc.doc_id, title=doc.title, text=doc.raw, sentences=[
        SentenceOut(index=s.index, start=s.start, end=s.end, kind=s.kind)
        for s in engine.index.sentences[first:last]],
        published=doc.published, author=doc.author, url=doc.url, pages=list(doc.pages) if doc.pages else None)


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


@router.put("/documents/{doc_id:document}", response_model=DocumentUpdated, dependencies=[Depends(require_admin)],
            responses={201: {"model": DocumentUpdated, "description": "created"}, **UPDATE_ERRORS},
            openapi_extra={"requestBody": {"required": True, "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": DocumentUpload.model_json_schema()}}}})
async def put_document(doc_id: UpdatedDocId, request: Request, response: Response) -> DocumentUpdated:
    """Add or replace a document: stored in the corpus folder (atomically, durably) and indexed before the
    answer, so the next question can be answered from it."""
    body = await request.body()
    content_type = request.headers.get("content-type", "text/plain")
    result = await _apply(request, lambda u: u.put(doc_id, body, content_type))
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return DocumentUpdated(**vars(result))


@router.delete("/documents/{doc_id:document}", response_model=DocumentUpdated, dependencies=[Depends(require_admin)],
               responses={404: {"description": "no such document"},
                          409: {"description": "the corpus would have no document left"}, **UPDATE_ERRORS})
async def delete_document(doc_id: UpdatedDocId, request: Request) -> DocumentUpdated:
    """Remove a document from the corpus folder and the index."""
    return DocumentUpdated(**vars(await _apply(request, lambda u: u.delete(doc_id))))
