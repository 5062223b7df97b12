"""Finding what a caller names: an event set (by our id, its name or TikTok's ID), a mapping.

What is not there raises `NotFound`, an `InputRejected`: exit status 2 on the CLI, the 404
page in the admin, a 404 answer from the admin JSON API.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from crm_postback.configuration import event_set_service
from crm_postback.core.errors import FieldError, InputRejected
from models import EventSet, Mapping

# Our id (the pages' URLs) or a name / TikTok event set ID (the CLI and the JSON API).
EventSetRef = int | str


class NotFound(InputRejected):
    """The event set or mapping named does not exist."""

    @property
    def message(self) -> str:
        return "; ".join(error.message for error in self.errors)


def load_event_set(session: Session, reference: EventSetRef) -> EventSet:
    if isinstance(reference, int):
        event_set = session.get(EventSet, reference)
        if event_set is None:
            raise NotFound([FieldError("event_set", f"there is no event set {reference}")])
        return event_set
    try:
        return event_set_service.get_event_set(session, reference)
    except InputRejected as error:
        raise NotFound(error.errors) from None


def load_mapping(session: Session, mapping_id: int, event_set: EventSetRef | None) -> Mapping:
    """The mapping; with `event_set`, only if it belongs to that event set."""
    if event_set is None:
        mapping = session.get(Mapping, mapping_id)
        if mapping is None:
            raise NotFound([FieldError("mapping_id", f"no mapping {mapping_id}")])
        return mapping
    owner = load_event_set(session, event_set)
    mapping = session.get(Mapping, mapping_id)
    if mapping is None or mapping.event_set_id != owner.id:
        raise NotFound(
            [FieldError("mapping_id", f"event set {owner.name!r} has no mapping {mapping_id}")]
        )
    return mapping
