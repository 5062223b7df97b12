"""Finding what a caller names: an event set (by our id, its name or TikTok's ID), a mapping.

What is not there raises `NotFound`, an `InputRejected`: exit status 2 on the CLI, the 404
page in the admin, a 404 answer from the admin JSON API.

Lookups run in the caller's session, scoped to its workspace: an event set or mapping of
another workspace is not there, and its message is the one of an id or name nothing has (it
names only what the caller gave, never whether something exists elsewhere).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from crm_postback.configuration import event_set_service
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.core.row_ids import MAX_BIG_ID as MAX_BIG_ID  # re-exported for the faces
from crm_postback.core.row_ids import MAX_ID as MAX_ID
from crm_postback.core.row_ids import is_row_id as is_row_id
from crm_postback.core.row_ids import row_id as row_id
from models import EventSet, Mapping

# Our id (the pages' URLs) or a name / TikTok event set ID (the CLI and the JSON API).
EventSetRef = int | str


class NotFound(InputRejected):
    """The event set or mapping named does not exist (in the caller's workspace)."""

    @property
    def message(self) -> str:
        return "; ".join(error.message for error in self.errors)


def _shown(row: int) -> str:
    """An id as named in a message: a number too large to be one is not written back."""
    return str(row) if is_row_id(row) else "with this id"


def load_event_set(session: Session, reference: EventSetRef) -> EventSet:
    if isinstance(reference, int):
        event_set = session.get(EventSet, reference) if is_row_id(reference) else None
        if event_set is None:
            raise NotFound([FieldError("event_set", f"there is no event set {_shown(reference)}")])
        return event_set
    try:
        return event_set_service.get_event_set(session, reference)
    except InputRejected as error:
        raise NotFound(error.errors) from None


def load_mapping(session: Session, mapping_id: int, event_set: EventSetRef | None) -> Mapping:
    """The mapping; with `event_set`, only if it belongs to that event set."""
    if event_set is None:
        mapping = session.get(Mapping, mapping_id) if is_row_id(mapping_id) else None
        if mapping is None:
            raise NotFound([FieldError("mapping_id", f"no mapping {_shown(mapping_id)}")])
        return mapping
    owner = load_event_set(session, event_set)
    mapping = session.get(Mapping, mapping_id) if is_row_id(mapping_id) else None
    if mapping is None or mapping.event_set_id != owner.id:
        raise NotFound(
            [
                FieldError(
                    "mapping_id", f"event set {owner.name!r} has no mapping {_shown(mapping_id)}"
                )
            ]
        )
    return mapping
