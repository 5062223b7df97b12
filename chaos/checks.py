"""What is verified once the outbox has drained: events, duplicates, reconciliation, PII."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql

from chaos.load import LEAD_EVENT_SOURCE, LoadPlan, phone_national, raw_email, sha256_hex
from chaos.pii import PiiScanner
from chaos.services import ChaosDatabase
from models import FINAL_STATUSES

# The outbox's own list: a status added there (no_match_key, consent_withdrawn) is final here.
FINAL = FINAL_STATUSES
OPEN_TRIGGER_STATUSES = ("received", "waiting_for_lead")
SAMPLE = 10


@dataclass
class OutboxState:
    triggers: dict[str, int]
    postbacks: dict[str, int]

    @property
    def triggers_stored(self) -> int:
        return sum(self.triggers.values())

    @property
    def open_triggers(self) -> int:
        return sum(self.triggers.get(s, 0) for s in OPEN_TRIGGER_STATUSES)

    @property
    def not_final(self) -> int:
        return sum(n for status, n in self.postbacks.items() if status not in FINAL)

    def drained(self, triggers_expected: int) -> bool:
        return (
            self.triggers_stored == triggers_expected
            and self.open_triggers == 0
            and self.not_final == 0
        )

    def summary(self) -> str:
        postbacks = " ".join(f"{s}={n}" for s, n in sorted(self.postbacks.items()))
        return (
            f"triggers {self.triggers_stored} (open {self.open_triggers}), "
            f"postbacks {sum(self.postbacks.values())}: {postbacks or '-'}"
        )


def outbox_state(database: ChaosDatabase) -> OutboxState:
    with database.connect() as conn:
        triggers = dict(conn.execute("SELECT status, count(*) FROM triggers GROUP BY 1").fetchall())
        postbacks = dict(
            conn.execute("SELECT status, count(*) FROM postbacks GROUP BY 1").fetchall()
        )
    return OutboxState(triggers=triggers, postbacks=postbacks)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class Verdict:
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def check(self, name: str, passed: bool, detail: str = "") -> None:
        self.checks.append(Check(name, passed, detail))


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def verify(
    *,
    plan: LoadPlan,
    triggers_pushed: int,
    database: ChaosDatabase,
    record_path: Path,
    scanner: PiiScanner,
    texts_to_scan: list[tuple[str, Path]],
) -> Verdict:
    verdict = Verdict()
    figures = verdict.figures
    expected = plan.expected
    expected_ids = set(expected)

    state = outbox_state(database)
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT id, event_id, status, attempts, event_name, last_message, trigger_id "
            "FROM postbacks ORDER BY id"
        ).fetchall()
        attempts_by_outcome = dict(
            conn.execute("SELECT outcome, count(*) FROM delivery_attempts GROUP BY 1").fetchall()
        )
        timeouts = _scalar(
            conn,
            "SELECT count(*) FROM delivery_attempts "
            "WHERE http_status IS NULL AND message LIKE '%%Timeout%%'",
        )
        # Schema-tolerant (row_to_json): the trigger table is being extended by others.
        unfinished_triggers = [
            row[0]
            for row in conn.execute(
                "SELECT row_to_json(t)::text FROM triggers t "
                "WHERE status NOT IN ('resolved', 'unmapped') ORDER BY id LIMIT %s",
                (SAMPLE,),
            )
        ]
        trigger_runs = _trigger_runs(conn)
    by_status: Counter[str] = Counter(row[2] for row in rows)
    delivered_ids = {row[1] for row in rows if row[2] == "delivered"}
    outbox_event_ids = [row[1] for row in rows if row[1] is not None]

    records = read_records(record_path)
    received_ids = {r["event_id"] for r in records}
    duplicates = [r for r in records if r["duplicate"]]
    copies = Counter(r["event_id"] for r in records)

    final_bad = by_status["failed"] + by_status["dead"] + by_status["expired"]
    lost = len(expected) - len(delivered_ids & expected_ids) - final_bad
    not_final = {s: n for s, n in by_status.items() if s not in FINAL}
    figures.update(
        {
            "triggers": plan_count(plan),
            "triggers_pushed": triggers_pushed,
            "triggers_stored": state.triggers_stored,
            "trigger_statuses": dict(sorted(state.triggers.items())),
            "leads": plan.leads,
            "events_expected": len(expected),
            "unmapped_expected": plan.expected_unmapped,
            "outbox_rows": len(rows),
            "outbox_statuses": dict(sorted(by_status.items())),
            "events_at_receiver_unique": len(received_ids),
            "events_at_receiver_total": len(records),
            "delivered": by_status["delivered"],
            "duplicates_at_receiver": len(duplicates),
            "event_ids_duplicated": sum(1 for n in copies.values() if n > 1),
            "max_copies_of_one_event": max(copies.values(), default=0),
            "dead": by_status["dead"],
            "failed": by_status["failed"],
            "expired": by_status["expired"],
            "unmapped": by_status["unmapped"],
            "not_final": sum(not_final.values()),
            "lost": lost,
            "attempts_by_outcome": dict(sorted(attempts_by_outcome.items())),
            "attempts_timed_out": timeouts,
            "trigger_processing_runs": trigger_runs,
            "max_attempts_of_one_event": max((row[3] for row in rows), default=0),
        }
    )

    # 1. Every expected event reached the simulator, nothing else did.
    missing = expected_ids - received_ids
    unexpected = received_ids - expected_ids
    figures["missing_at_receiver"] = len(missing)
    figures["unexpected_at_receiver"] = len(unexpected)
    verdict.check(
        "unique event_ids at the simulator == expected",
        not missing and not unexpected,
        f"{len(received_ids)} unique, {len(expected)} expected, {len(missing)} missing, "
        f"{len(unexpected)} unexpected",
    )
    _evidence(verdict, "missing at the simulator", sorted(missing), rows)
    _evidence(verdict, "not expected but received", sorted(unexpected), rows)

    # 2. The outbox agrees: delivered event_ids == expected, one row per expected event.
    delivered_not_received = delivered_ids - received_ids
    figures["delivered_not_received"] = len(delivered_not_received)
    verdict.check(
        "outbox delivered event_ids == expected",
        delivered_ids == expected_ids,
        f"{len(delivered_ids)} delivered; {len(delivered_not_received)} marked delivered but "
        f"never received",
    )
    verdict.check(
        "one outbox row per expected event",
        len(outbox_event_ids) == len(set(outbox_event_ids)) == len(expected)
        and set(outbox_event_ids) == expected_ids,
        f"{len(outbox_event_ids)} rows with an event_id, {len(expected)} expected",
    )
    verdict.check(
        "every trigger stored exactly once",
        state.triggers_stored == plan_count(plan) == triggers_pushed,
        f"{state.triggers_stored} stored, {triggers_pushed} pushed, {plan_count(plan)} planned",
    )

    # 3. Reconciliation: delivered + final states == expected; nothing lost, dead or stuck.
    verdict.check(
        "outbox reconciles (delivered + failed/dead/expired == expected, lost 0)",
        lost == 0 and not_final == {},
        f"lost {lost}, not final {not_final or 0}",
    )
    verdict.check("no dead event", by_status["dead"] == 0, f"dead {by_status['dead']}")
    verdict.check(
        "no failed/expired event",
        by_status["failed"] + by_status["expired"] == 0,
        f"failed {by_status['failed']}, expired {by_status['expired']}",
    )
    verdict.check(
        "unmapped rows == expected unmapped triggers",
        by_status["unmapped"] == plan.expected_unmapped,
        f"{by_status['unmapped']} unmapped, {plan.expected_unmapped} expected",
    )
    verdict.evidence.extend(f"trigger not resolved: {t}" for t in unfinished_triggers)
    bad_rows = [row for row in rows if row[2] not in ("delivered", "unmapped")]
    for row in bad_rows[:SAMPLE]:
        verdict.evidence.append(
            f"postback id={row[0]} trigger={row[6]} event={row[4]} event_id={row[1]} "
            f"status={row[2]} attempts={row[3]} last_message={row[5]!r}"
        )

    # 4. Duplicates at the receiver only ever repeat an expected event, unchanged.
    dup_unexpected = {r["event_id"] for r in duplicates} - expected_ids
    changed = _changed_copies(records)
    figures["duplicates_changed_payload"] = len(changed)
    verdict.check(
        "duplicates carry an expected event_id and the same payload",
        not dup_unexpected and not changed,
        f"{len(duplicates)} duplicate copies of {figures['event_ids_duplicated']} events; "
        f"{len(dup_unexpected)} unexpected ids, {len(changed)} changed payloads",
    )
    verdict.evidence.extend(f"changed copy: {c}" for c in changed[:SAMPLE])

    # 5. What was sent is what the plan says (hashes of the right lead, time, keys).
    mismatches = list(_payload_mismatches(plan, records))
    figures["payload_mismatches"] = len(mismatches)
    verdict.check(
        "payloads carry the lead's hashes, event_time and ids",
        not mismatches,
        f"{len(mismatches)} mismatches",
    )
    verdict.evidence.extend(mismatches[:SAMPLE])

    # 6. No raw email/phone anywhere: rows, what the simulator received, logs, broker.
    rows_scanned = _scan_database(database, scanner)
    for where, path in [("simulator payloads", record_path), *texts_to_scan]:
        for chunk in _chunks(path):
            scanner.scan(chunk, where)
    figures["pii_leaks"] = scanner.count
    figures["pii_rows_scanned"] = rows_scanned
    figures["pii_chars_scanned"] = scanner.scanned_chars
    verdict.check(
        "no raw email/phone sent or stored",
        scanner.count == 0,
        f"{scanner.count} found in {rows_scanned} rows, {len(records)} received events, "
        f"{len(texts_to_scan)} logs and the sampled broker messages",
    )
    verdict.evidence.extend(scanner.findings[:SAMPLE])
    return verdict


def _scalar(conn: Any, query: str) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _trigger_runs(conn: Any) -> dict[str, int]:
    """How many processing runs triggers took ({runs: triggers}), if the column exists."""
    try:
        with conn.transaction():
            found = conn.execute(
                "SELECT attempts, count(*) FROM triggers GROUP BY 1 ORDER BY 1"
            ).fetchall()
    except Exception:
        return {}
    return {str(runs): count for runs, count in found}


def plan_count(plan: LoadPlan) -> int:
    return len(plan.triggers)


def _evidence(verdict: Verdict, what: str, event_ids: list[str], rows: list[Any]) -> None:
    by_event_id = {row[1]: row for row in rows}
    for event_id in event_ids[:SAMPLE]:
        row = by_event_id.get(event_id)
        if row is None:
            verdict.evidence.append(f"{what}: event_id={event_id} has no outbox row")
        else:
            verdict.evidence.append(
                f"{what}: event_id={event_id} postback id={row[0]} status={row[2]} "
                f"attempts={row[3]} last_message={row[5]!r}"
            )


def _changed_copies(records: list[dict[str, Any]]) -> list[str]:
    first: dict[tuple[str, str, str], str] = {}
    changed: list[str] = []
    for record in records:
        key = (record["event_source_id"], record["event"], record["event_id"])
        body = json.dumps(record["payload"], sort_keys=True)
        if key not in first:
            first[key] = body
        elif first[key] != body:
            changed.append(f"event_id={record['event_id']} request_id={record['request_id']}")
    return changed


def _payload_mismatches(plan: LoadPlan, records: list[dict[str, Any]]) -> Iterator[str]:
    for record in records:
        exp = plan.expected.get(record["event_id"])
        if exp is None:
            continue  # counted as unexpected already
        payload = record["payload"]
        user = payload.get("user", {})
        lead = payload.get("lead", {})
        wanted = {
            "event_source_id": (record["event_source_id"], exp.source_id),
            "event": (payload.get("event"), exp.event_name),
            "event_time": (payload.get("event_time"), exp.event_time),
            "user.email": (user.get("email"), [sha256_hex(raw_email(exp.lead_number).lower())]),
            "user.phone": (
                user.get("phone"),
                [sha256_hex("+1" + phone_national(exp.lead_number))],
            ),
            "user.ttclid": (user.get("ttclid"), exp.ttclid),
            "lead.lead_id": (lead.get("lead_id"), exp.tiktok_lead_id),
            # `lead` goes only with a TikTok lead id.
            "lead.lead_event_source": (
                lead.get("lead_event_source"),
                LEAD_EVENT_SOURCE if exp.tiktok_lead_id else None,
            ),
        }
        for name, (got, want) in wanted.items():
            if got != want:
                yield f"event_id={exp.event_id} {name}: sent {got!r}, expected {want!r}"


def _scan_database(database: ChaosDatabase, scanner: PiiScanner) -> int:
    scanned = 0
    with database.connect() as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
            )
        ]
        for table in tables:
            with conn.transaction(), conn.cursor(name=f"scan_{table}") as cursor:
                cursor.itersize = 2000
                cursor.execute(
                    sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(sql.Identifier(table))
                )
                batch: list[str] = []
                for (text,) in cursor:
                    batch.append(text)
                    scanned += 1
                    if len(batch) >= 2000:
                        scanner.scan("\n".join(batch), f"table {table}")
                        batch = []
                if batch:
                    scanner.scan("\n".join(batch), f"table {table}")
    return scanned


def _chunks(path: Path, size: int = 4 << 20) -> Iterator[str]:
    """Line-aligned chunks of a (possibly large) text file."""
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as file:
        while True:
            chunk = file.read(size)
            if not chunk:
                return
            rest = file.readline()
            yield chunk + rest
