"""Replay: dead, failed or expired postbacks go out again with the same event_id.

The selection is read once; the rows are then re-queued in chunks, each chunk one unit of
work with its `postbacks.replay` audit entry and, after its commit, one delivery task. A
broker that is down leaves the re-queued rows (due, in the database) for the sweeper.

Everything (the selection, its count, each chunk) is read and changed in the actor's
workspace, with the editor role: a postback or event set of another workspace is not found,
exactly like one that does not exist, and is never re-queued.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from crm_postback.commands.lookups import (
    MAX_BIG_ID,
    MAX_ID,
    EventSetRef,
    is_row_id,
    load_event_set,
)
from crm_postback.commands.unit_of_work import Actor, UnitOfWork, unit_of_work
from crm_postback.core.errors import InputRejected
from crm_postback.operations.replay import (
    ReplaySelection,
    count_replayable,
    replay,
    replayable_ids,
    selected_event_set_id,
)
from models import PostbackStatus, Role, utcnow
from worker.tasks import deliver_postbacks

CHUNK_SIZE = 500
AUDITED_IDS = 200  # ids kept in each audit entry


@dataclass(frozen=True)
class ReplayChunk:
    requested: int
    requeued: list[int]
    left_for_sweeper: int  # re-queued, but the broker was down: the sweeper sends them


@dataclass
class ReplayOutcome:
    requested: int = 0
    requeued: list[int] = field(default_factory=list)
    left_for_sweeper: int = 0

    @property
    def not_rebuilt(self) -> int:
        """Rows whose payload could not be built again (they stay failed, with the reason)."""
        return self.requested - len(self.requeued)


REQUIRED_ROLE = Role.EDITOR


def count_replay(selection: ReplaySelection, actor: Actor) -> int:
    """What `replay_postbacks` would re-queue now (the dry run), in the actor's workspace."""
    with unit_of_work(actor, requires=REQUIRED_ROLE, dry_run=True) as uow:
        _check_names(uow, selection)
        return count_replayable(uow.session, selection)


def _check_names(uow: UnitOfWork, selection: ReplaySelection) -> None:
    """An event set named that is not there (or in another workspace) is NotFound."""
    if selection.event_set:
        load_event_set(uow.session, selection.event_set)
    if selection.event_set_id is not None:
        load_event_set(uow.session, selection.event_set_id)


@dataclass(frozen=True)
class ReplayPostbacks:
    """An empty selection is refused unless `everything` (every replayable postback)."""

    selection: ReplaySelection
    everything: bool = False
    chunk_size: int = CHUNK_SIZE
    # Named next to chosen ids: must exist and goes into the audit entries, selects nothing.
    audited_event_set: EventSetRef | None = None

    @classmethod
    def chosen_or_dead(cls, ids: Sequence[int], event_set: EventSetRef | None) -> ReplayPostbacks:
        """The admin's rule (pages and JSON API): the chosen postbacks (dead, failed or
        expired), otherwise the event set's dead ones; neither is refused as empty. An event
        set named with ids only labels the audit entries."""
        if ids:
            return cls(ReplaySelection(ids=list(ids)), audited_event_set=event_set)
        if isinstance(event_set, int):
            return cls(ReplaySelection(event_set_id=event_set, statuses=[PostbackStatus.DEAD]))
        if event_set:
            return cls(ReplaySelection(event_set=event_set, statuses=[PostbackStatus.DEAD]))
        return cls(ReplaySelection())


def replay_postbacks(
    request: ReplayPostbacks,
    actor: Actor,
    on_chunk: Callable[[ReplayChunk], None] | None = None,
) -> ReplayOutcome:
    """`on_chunk` hears of each committed chunk (the CLI's progress bar)."""
    actor.require(REQUIRED_ROLE)
    selection = request.selection
    if selection.is_empty() and not request.everything:
        raise InputRejected.one("postback_id", "name the postbacks to replay")
    if not all(is_row_id(i, MAX_BIG_ID) for i in selection.ids):
        raise InputRejected.one("postback_id", "must be postback ids (whole numbers from 1)")
    if selection.code is not None and not -MAX_ID <= selection.code <= MAX_ID:
        raise InputRejected.one("code", "is not a code TikTok answers with")
    # Read once, changing nothing; each chunk below is its own unit of work.
    with unit_of_work(actor, requires=REQUIRED_ROLE, dry_run=True) as uow:
        _check_names(uow, selection)  # an unknown name is NotFound (a 404 on the web)
        event_set_id = selected_event_set_id(uow.session, selection)
        if request.audited_event_set is not None:
            event_set_id = load_event_set(uow.session, request.audited_event_set).id
        ids = replayable_ids(uow.session, selection)
    outcome = ReplayOutcome()
    size = request.chunk_size
    for start in range(0, len(ids), size):
        chunk = _replay_chunk(actor, ids[start : start + size], event_set_id)
        outcome.requested += chunk.requested
        outcome.requeued.extend(chunk.requeued)
        outcome.left_for_sweeper += chunk.left_for_sweeper
        if on_chunk is not None:
            on_chunk(chunk)
    return outcome


def _replay_chunk(actor: Actor, wanted: list[int], event_set_id: int | None) -> ReplayChunk:
    with unit_of_work(actor, requires=REQUIRED_ROLE) as uow:
        queued = replay(uow.session, wanted, utcnow())
        uow.audit(
            "postbacks.replay",
            entity_type="postbacks",
            event_set_id=event_set_id,
            after={
                "requested": len(wanted),
                "requeued": len(queued),
                "postback_ids": queued[:AUDITED_IDS],
            },
        )
        if queued:
            uow.publish_after_commit(
                lambda: deliver_postbacks.delay(queued),
                waiting=f"{len(queued)} replayed postback(s)",
            )
    return ReplayChunk(len(wanted), queued, len(queued) if uow.unsent else 0)
