"""``POST /ask``: a question answered with cited source sentences."""

from __future__ import annotations

import time

import anyio
from fastapi import APIRouter, HTTPException, Request, status

from qa.api.errors import BAD_INPUT, NOT_READY, error_response, not_found
from qa.api.schemas import AskRequest, AskResponse
from qa.api.state import EngineDep
from qa.conversation import UnknownConversation
from qa.engine import Engine, InvalidQuestion

router = APIRouter(tags=["answers"])


# Unset, not None, is left out: the keys an answer omits (understood_as, message, context…) stay absent, while
# a null it gives (a disagreement's page) is kept.
@router.post("/ask", response_model=AskResponse, response_model_exclude_unset=True,
             responses={404: error_response("unknown conversation"), **BAD_INPUT, **NOT_READY})
async def ask(body: AskRequest, engine: EngineDep, request: Request) -> dict:
    """Answer a question with cited source sentences (a follow-up when `conversation_id` is given)."""
    # CPU work, in a worker thread; at most `ask_workers` at once, so that a burst queues here instead of
    # in thousands of threads, while enough run together for their questions to share model runs.
    return await anyio.to_thread.run_sync(answer_question, body, engine, limiter=request.app.state.ask_limiter)


def answer_question(body: AskRequest, engine: Engine) -> dict:
    """The work of POST /ask (blocking)."""
    t0 = time.perf_counter()
    cid = body.conversation_id
    try:
        answer = engine.ask(body.question, top_k=body.top_k, retriever=body.retriever, conversation_id=cid,
                            start_conversation=cid is None, abstain=body.abstain)
    except UnknownConversation:
        raise not_found(f"no conversation {cid!r}") from None
    except InvalidQuestion as exc:  # the request model checks the question too; kept for safety
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    out = answer.to_dict()
    out["took_ms"] = round((time.perf_counter() - t0) * 1000, 3)
    return out
