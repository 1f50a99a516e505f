"""``/documents``: the documents of the index in service (GET), the files it skipped (GET
``/documents/skipped``), and the routes that change the corpus (PUT, DELETE).

A document id is its path in the corpus folder (``news/2026/storm.txt``); records of a ``.jsonl`` file are
changed by changing that file. One id rule holds for every route and for the files the index reads
(``qa.formats.check_file_name``), so every document listed can be opened, replaced and deleted. PUT and
DELETE need ``Authorization: Bearer <token>`` (:func:`qa.api.security.require_admin`); without a configured
token they answer 403, so a client can tell "updates are off here" (403) from "wrong or missing token"
(401). Each returns once the change is on disk and the engine in service answers from it; the work is
:class:`qa.updates.Updater`'s. The routes are on one router, so a 405 at a document's path lists every
method.
"""

from __future__ import annotations

import errno
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, HTTPException, Path as PathParam, Request, Response, status
from starlette.convertors import PathConvertor, register_url_convertor

from qa import confined
from qa.api.errors import NOT_READY, error_response, not_found
from qa.api.schemas import DocumentList, DocumentOut, DocumentUpdated, DocumentUpload, SentenceOut, SkippedFile
from qa.api.security import require_admin
from qa.api.state import EngineDep, catalog, updater_of_app
from qa.formats import MAX_DOC_ID_CHARS, MAX_ID_CHARS, DocumentError, check_document_id
from qa.updates import BadDocument, UnknownDocument, UnreadableBody, UploadTooLarge, UpdateResult

router = APIRouter(tags=["documents"])


class DocumentIdConvertor(PathConvertor):
    """A document id in a path: anything (slashes included) but "skipped", which is ``GET /documents/skipped``
    and never a document (a file id has a supported suffix), so that the other methods do not claim that
    path too."""

    regex = r"(?!skipped$).+"


register_url_convertor("document", DocumentIdConvertor())

DocId = Annotated[str, PathParam(min_length=1, max_length=MAX_DOC_ID_CHARS, description="a document id as "
                                 "/documents lists it, e.g. news/2026/storm.txt or archive.jsonl#42")]
UpdatedDocId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_CHARS, description="the document's path in "
                                        "the corpus folder, e.g. report-2026-12-03.txt or news/2026/storm.html")]
UPDATE_ERRORS = {400: error_response("the body cannot be parsed (JSON nested too deep)"),
                 401: error_response("missing or wrong admin token"),
                 403: error_response("document updates are disabled (no admin token configured), or the server "
                                     "may not write there"),
                 408: error_response("the body did not arrive in time"),
                 409: error_response("the path is taken by a folder or a link, goes through a file, or differs "
                                     "from an existing name only in case"),
                 413: error_response("the document is larger than QA_MAX_DOCUMENT_BYTES"),
                 422: error_response("a bad id (see the id rule in docs/API.md) or a document that cannot be read "
                                     "(not UTF-8, binary, empty)"),
                 503: error_response("the engine is still loading"),
                 507: error_response("the corpus folder's disk is full")}


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
            responses={404: error_response("unknown document, or an id no document can have"),
                       422: error_response("an id longer than any document's"), **NOT_READY})
def get_document(doc_id: DocId, engine: EngineDep) -> DocumentOut:
    """A document's raw text and its sentences with offsets, to show a cited sentence in place."""
    try:
        check_document_id(doc_id)
    except DocumentError as exc:  # no document can be called so (the reason helps a client that built the id)
        raise not_found(f"no document can have this id: {exc}") from None
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
    except UnreadableBody as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except (BadDocument, confined.NameTooLong) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except confined.NotPermitted as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except UnknownDocument:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such document") from None
    except ValueError as exc:  # a path the folder cannot take (confined.Conflict), or a corpus that cannot be
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None  # indexed (no document left): undone
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HTTPException(status.HTTP_507_INSUFFICIENT_STORAGE, "the corpus folder's disk is full") from None
        raise


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
               responses={**UPDATE_ERRORS, 404: error_response("no such document"),
                          409: error_response("the corpus would have no document left, or the path is a folder "
                                              "or a link")})
async def delete_document(doc_id: UpdatedDocId, request: Request) -> DocumentUpdated:
    """Remove a document from the corpus folder and the index."""
    return DocumentUpdated(**vars(await _apply(request, lambda u: u.delete(doc_id))))
