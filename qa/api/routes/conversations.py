"""``/conversations``: start, read and forget the conversations that ``/ask`` continues."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path as PathParam, Response, status

from qa.api.errors import BAD_INPUT, NOT_READY, error_response, not_found
from qa.api.schemas import CitationOut, ConversationCreated, ConversationOut, DisagreementOut, TurnOut
from qa.api.state import EngineDep
from qa.conversation import MAX_ID_CHARS

router = APIRouter(tags=["conversations"])

ConversationId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_CHARS)]


@router.post("/conversations", status_code=201, response_model=ConversationCreated,
             responses={**BAD_INPUT, **NOT_READY})
def create_conversation(engine: EngineDep) -> ConversationCreated:
    """Start an empty conversation; pass its id to /ask."""
    return ConversationCreated(conversation_id=engine.conversations.create())


@router.get("/conversations/{conversation_id}", response_model=ConversationOut,
            responses={404: error_response("unknown conversation"), 422: error_response("invalid id"), **NOT_READY})
def get_conversation(conversation_id: ConversationId, engine: EngineDep) -> ConversationOut:
    """The turns of a conversation, oldest first."""
    turns = engine.conversations.turns(conversation_id)
    if turns is None:
        raise not_found(f"no conversation {conversation_id!r}")
    return ConversationOut(conversation_id=conversation_id, turns=[
        TurnOut(question=t.question, understood_as=t.understood_as, answered=t.answered, asked_at=str(t.asked_at),
                citations=[CitationOut(**c.to_dict()) for c in t.citations],
                disagrees=[[DisagreementOut(**d.to_dict()) for d in ds] for ds in t.disagrees]) for t in turns])


@router.delete("/conversations/{conversation_id}", status_code=204, response_class=Response,
               responses={204: {"description": "deleted"}, 404: error_response("unknown conversation"),
                          422: error_response("invalid id"), **NOT_READY})
def delete_conversation(conversation_id: ConversationId, engine: EngineDep) -> Response:
    """Forget a conversation."""
    if not engine.conversations.delete(conversation_id):
        raise not_found(f"no conversation {conversation_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
