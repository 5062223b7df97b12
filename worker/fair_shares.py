"""Sharing a batch out across event sets, so one advertiser's backlog never starves another.

Work is taken per event set: every set with work gets an equal share of the batch, and the
room a set cannot use goes to the sets that have more. Used for the triggers a worker
resolves (`worker.processing`) and the due postbacks the sweeper reserves (`worker.delivery`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import Integer, Select, bindparam, column, func, select, true
from sqlalchemy.orm import Session

from models.bulk import BinaryArray, is_postgres


class PerSetRow(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def event_set_id(self) -> int: ...


class SetShare(NamedTuple):
    """At most `limit` rows of one event set, in id order, after row `after` (or from its
    first)."""

    set_id: int
    after: int | None
    limit: int


RowT = TypeVar("RowT", bound=PerSetRow)
# Each share's rows, locked: every row returned is the caller's to process.
Take = Callable[[Sequence[SetShare]], list[RowT]]
# A set's rows in id order: a SELECT ... ORDER BY id LIMIT ..., given the set id and the
# limit (values, or columns of the shares' VALUES list).
OfSet = Callable[[Any, int | None, Any], Select[Any]]


class Undoable(Protocol):
    """What was taken since it began can be let go (`rollback`) or kept (`commit`)."""

    def rollback(self) -> None: ...

    def commit(self) -> None: ...


def share_out(
    set_ids: Sequence[int],
    limit: int,
    take: Take[RowT],
    *,
    small_first: Callable[[], Undoable] | None = None,
) -> tuple[list[RowT], bool]:
    """Up to `limit` rows of the sets `set_ids`: an equal share each first, then the room
    left for the sets that filled theirs (they may have more). Also says whether rows were
    left waiting. Takes exactly what it returns: a row locked and then left out would be
    skipped by the next worker until this transaction ends, and then wait for the sweeper.

    With `small_first`, small sets go first: when some sets fit in their share and others
    fill theirs, the shares taken are let go (`small_first()` began before taking them) and
    only the small sets' rows are taken again (and rows are said to be left waiting), so a
    few fresh rows of a quiet set go through in a small batch of their own instead of
    waiting for a full batch of another set's backlog to be built, stored and sent."""
    if limit <= 0 or not set_ids:
        return [], False
    cut_off = len(set_ids) > limit
    if cut_off:
        # More sets than places: a random start, so that no set is always left out (and the
        # sets left out this time are waiting).
        start = random.randrange(len(set_ids))
        set_ids = [*set_ids[start:], *set_ids[:start]][:limit]
    shares = _equal_shares(set_ids, limit)
    if small_first is None or len(shares) == 1:
        taken = take(shares)
    else:
        attempt = small_first()
        taken = take(shares)
        counts = Counter(row.event_set_id for row in taken)
        small = [share for share in shares if 0 < counts[share.set_id] < share.limit]
        if small and any(counts[share.set_id] == share.limit for share in shares):
            attempt.rollback()
            taken = take(small)
            if taken:
                return taken, True
            # Another worker took the small sets' rows meanwhile: the others share the batch
            # (taking nothing here would end the chain of wake-ups with their rows waiting).
            shares = _equal_shares([s.set_id for s in shares if s not in small], limit)
            taken = take(shares)
        else:
            attempt.commit()
    last_of_set: dict[int, int] = {}
    for row in taken:
        last_of_set[row.event_set_id] = max(row.id, last_of_set.get(row.event_set_id, row.id))
    counts = Counter(row.event_set_id for row in taken)
    filled = [share for share in shares if counts[share.set_id] == share.limit]
    for share in filled:
        room = limit - len(taken)
        if room <= 0:
            break
        taken.extend(take([SetShare(share.set_id, last_of_set[share.set_id], room)]))
    return taken, cut_off or (bool(filled) and len(taken) >= limit)


def undoable_take(session: Session) -> Undoable:
    """A savepoint on PostgreSQL: rolling back to it lets the rows locked since go. Elsewhere
    (SQLite) no row is locked, so rows left out need nothing let go."""
    if is_postgres(session):
        return session.begin_nested()
    return _NothingLocked()


class _NothingLocked:
    def rollback(self) -> None:
        pass

    def commit(self) -> None:
        pass


def _equal_shares(set_ids: Sequence[int], limit: int) -> list[SetShare]:
    """`limit` split across the sets, the first ones one more when it does not divide."""
    each, extra = divmod(limit, len(set_ids))
    return [
        SetShare(set_id, None, each + (1 if position < extra else 0))
        for position, set_id in enumerate(set_ids)
    ]


class PerSetQuery:
    """A set's rows (`of_set`), and the statement that takes the rows of many shares at once,
    built on its first use: keep one per `of_set` for as long as its statement holds."""

    def __init__(self, of_set: OfSet) -> None:
        self.of_set = of_set
        self._of_shares: Select[Any] | None = None

    def of_shares(self) -> Select[Any]:
        """Each share by its own LATERAL subquery. The shares come as two array parameters
        (`set_ids`, `limits`), not as a VALUES list, which SQLAlchemy can neither cache nor
        reuse: it compiled that statement anew on every call."""
        if self._of_shares is None:
            wanted = (
                func.unnest(
                    bindparam("set_ids", type_=BinaryArray(Integer())),
                    bindparam("limits", type_=BinaryArray(Integer())),
                )
                .table_valued(column("set_id", Integer), column("share", Integer))
                .render_derived(name="wanted")
            )
            rows = self.of_set(wanted.c.set_id, None, wanted.c.share).lateral("rows")
            self._of_shares = select(rows).select_from(wanted.join(rows, true()))
        return self._of_shares


def rows_of_sets(session: Session, query: PerSetQuery, shares: Sequence[SetShare]) -> list[Any]:
    """`query`'s rows for each share: on PostgreSQL one statement, elsewhere one per set."""
    if not is_postgres(session) or len(shares) == 1 or any(share.after for share in shares):
        return [
            row
            for share in shares
            for row in session.execute(query.of_set(share.set_id, share.after, share.limit)).all()
        ]
    parameters = {
        "set_ids": [share.set_id for share in shares],
        "limits": [share.limit for share in shares],
    }
    return list(session.execute(query.of_shares(), parameters).all())
