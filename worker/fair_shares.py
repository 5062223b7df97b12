"""Sharing a batch out across event sets, so one advertiser's backlog never starves another.

Work is taken per event set: every set with work gets an equal share of the batch, and the
room a set cannot use goes to the sets that have more. Used for the triggers a worker
resolves (`worker.processing`) and the due postbacks the sweeper reserves (`worker.delivery`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import Integer, Select, column, select, true
from sqlalchemy import values as values_clause
from sqlalchemy.orm import Session

from models.bulk import is_postgres


class PerSetRow(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def event_set_id(self) -> int: ...


RowT = TypeVar("RowT", bound=PerSetRow)
# The first `per_set` rows of each (event set, after this row id or from the start).
Take = Callable[[Sequence[tuple[int, int | None]], int], list[RowT]]
# A set's locked rows in id order: a SELECT ... ORDER BY id LIMIT per_set FOR UPDATE
# SKIP LOCKED, given the set id (a value or a column of the sets' VALUES list).
OfSet = Callable[[Any, int | None, int], Select[Any]]


def share_out(
    set_ids: Sequence[int], limit: int, take: Take[RowT], *, small_first: bool = False
) -> tuple[list[RowT], bool]:
    """Up to `limit` rows of the sets `set_ids`, an equal share each first, then what is
    left for the sets that filled their share (they may have more). Also says whether rows
    were left waiting.

    `small_first`: when some sets fit in their share and others have more, only the former
    are returned (and rows are said to be left waiting): a few fresh rows of a quiet set
    then go through in a small batch of their own instead of waiting for a full batch of
    another set's backlog to be built, stored and sent."""
    if limit <= 0 or not set_ids:
        return [], False
    if len(set_ids) > limit:
        # More sets than places: a random start, so that no set is always left out.
        start = random.randrange(len(set_ids))
        set_ids = [*set_ids[start:], *set_ids[:start]][:limit]
    share = -(-limit // len(set_ids))
    taken = take([(set_id, None) for set_id in set_ids], share)
    by_set: dict[int, list[RowT]] = defaultdict(list)
    for row in taken:
        by_set[row.event_set_id].append(row)
    filled = [set_id for set_id in set_ids if len(by_set.get(set_id, [])) == share]
    if small_first and filled and len(filled) < len(by_set):
        return [row for row in taken if len(by_set[row.event_set_id]) < share], True
    taken = taken[:limit]
    for set_id in filled:
        room = limit - len(taken)
        if room <= 0:
            break
        taken.extend(take([(set_id, by_set[set_id][-1].id)], room))
    return taken, bool(filled) and len(taken) >= limit


def rows_of_sets(
    session: Session, of_set: OfSet, sets: Sequence[tuple[int, int | None]], per_set: int
) -> list[Any]:
    """`of_set`'s rows for each set: on PostgreSQL one statement (each set's share locked by
    its own LATERAL subquery), elsewhere one statement per set."""
    if not is_postgres(session) or len(sets) == 1 or any(after for _set, after in sets):
        return [
            row for set_id, after in sets for row in session.execute(of_set(set_id, after, per_set))
        ]
    wanted = values_clause(column("set_id", Integer), name="wanted").data(
        [(set_id,) for set_id, _after in sets]
    )
    share = of_set(wanted.c.set_id, None, per_set).lateral("share")
    return list(session.execute(select(share).select_from(wanted.join(share, true()))))
