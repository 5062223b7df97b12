"""The printed table, the JSON figures and the description of the machine the run used."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from chaos.checks import Verdict


def machine() -> dict[str, Any]:
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _row(label: str, value: Any) -> str:
    return f"  {label:<44} {value!s:>12}"


def render(result: dict[str, Any], verdict: Verdict) -> str:
    f = verdict.figures
    m = result["machine"]
    faults = result["faults"]
    lines = [
        "",
        f"crm-postback chaos run: mode={result['mode']} seed={result['seed']} "
        f"-> {'PASS' if result['passed'] else 'FAIL'}",
        f"machine: {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}, "
        f"{m['cpu']}; PostgreSQL {result['versions']['postgres']}, "
        f"Redis {result['versions']['redis']}, RabbitMQ {result['versions'].get('rabbitmq', '-')}, "
        f"Celery {result['versions']['celery']}",
        f"processes: {result['workers']} x celery worker (prefork, concurrency "
        f"{result['concurrency']}) + 1 x celery beat; broker: "
        + _broker(result.get("broker", {}))
        + f"; database {result['database']} on "
        + _server(result.get("postgres_server", {}))
        + _pgbouncer(result.get("pgbouncer", {})),
        "",
        _row("triggers", f.get("triggers", "-")),
        _row("events expected", f.get("events_expected", "-")),
        _row("events at the receiver (unique event_id)", f.get("events_at_receiver_unique", "-")),
        _row("delivered (outbox)", f.get("delivered", "-")),
        _row("duplicates at the receiver (same event_id)", f.get("duplicates_at_receiver", "-")),
        _row("dead", f.get("dead", "-")),
        _row("failed / expired", f"{f.get('failed', '-')} / {f.get('expired', '-')}"),
        _row(
            "unmapped (expected)", f"{f.get('unmapped', '-')} ({f.get('unmapped_expected', '-')})"
        ),
        _row("lost", f.get("lost", "-")),
        _row("raw email/phone found", f.get("pii_leaks", "-")),
        _row("time to drain after the last fault", _seconds(result.get("drain_seconds"))),
        _row("wall time", _seconds(result.get("wall_seconds"))),
        "",
        "faults injected (" + str(sum(faults["counts"].values())) + "):",
    ]
    lines.extend(_row(name, count) for name, count in sorted(faults["counts"].items()))
    lines.append(_row("postgres backends terminated in all", faults["pg_backends_terminated"]))
    lines.append(
        _row(
            "processes that exited on their own (restarted)",
            faults["restarts_after_unexpected_exit"],
        )
    )
    lines.extend(f"  ! could not inject: {e}" for e in faults["errors"][:5])
    lines.extend(
        f"  - left out: {name} ({why})" for name, why in sorted(faults.get("left_out", {}).items())
    )
    bouncer = result.get("pgbouncer", {})
    if bouncer.get("used"):
        lines.append(_row("pgbouncer starts (first + restarts)", bouncer["starts"]))
    server = result.get("postgres_server", {})
    if server.get("kind") == "private cluster":
        lines += [
            _row("postgres server starts (first + restarts)", server["starts"]),
            _row("postgres SIGKILLs / crash recoveries seen", f"{server['crashes']} / "
                 f"{server['crash_recoveries']}"),
            _row("postgres fast restarts / clean starts", f"{server['fast_restarts']} / "
                 f"{server['clean_starts_after_shutdown']}"),
            _row("backends that exited after the SIGKILL", server["children_died_by_themselves"]),
        ]  # fmt: skip
        lines.extend(f"  ! postgres: {e}" for e in server["errors"][:5])
        if server["recovery_lines"]:
            lines.append("crash recovery, from the server log (first recovery):")
            first = server["recovery_lines"][:4]
            lines.extend(f"  {line}" for line in first)
    sim = result.get("simulator", {})
    push = result.get("push", {})
    lines += [
        "simulator faults: "
        f"{result['simulator_faults']}; answers by HTTP status "
        f"{sim.get('requests_by_http_status', {})}, by code {sim.get('requests_by_code', {})}, "
        f"{sim.get('requests_held_past_timeout', 0)} held past the workers' read timeout "
        f"(of {sim.get('requests_total', 0)} requests; a request carries up to 1,000 events)",
        f"load: {push.get('batches', 0)} enqueue_triggers batches, "
        f"{push.get('batch_retries', 0)} retried after a database error "
        f"({push.get('already_stored_on_retry', 0)} triggers found already stored); "
        f"attempts by outcome {f.get('attempts_by_outcome', {})} "
        f"({f.get('attempts_timed_out', 0)} timed out); "
        f"max attempts of one event {f.get('max_attempts_of_one_event', '-')}; "
        f"trigger processing runs {f.get('trigger_processing_runs', {})}",
        f"load errors retried, by kind: {push.get('errors_by_kind', {})}",
        _server_note(server),
        *_broker_note(result.get("broker", {})),
        "",
        "checks:",
    ]
    lines.extend(
        f"  [{'PASS' if c.passed else 'FAIL'}] {c.name}: {c.detail}" for c in verdict.checks
    )
    if verdict.evidence:
        lines.append("evidence:")
        lines.extend(f"  {e}" for e in verdict.evidence[:40])
    return "\n".join(lines) + "\n"


def _broker(broker: dict[str, Any]) -> str:
    if broker.get("kind") == "rabbitmq":
        return f"RabbitMQ {broker.get('url')} (quorum queue {broker.get('queue')}, shared server)"
    return f"private redis-server on port {broker.get('port')}"


def _broker_note(broker: dict[str, Any]) -> list[str]:
    if broker.get("kind") != "rabbitmq":
        return []
    return [
        "note: the RabbitMQ server is shared and NOT restarted, so the broker-restart fault "
        "was NOT injected and no broker messages were sampled during the run; "
        f"message(s) left in the run's queue at the end: {broker.get('left_in_queue_at_the_end')}; "
        "they were looked at (basic_get without ack, put back) and scanned for raw PII; the queue "
        "and its exchange are deleted at the end."
    ]


def _pgbouncer(bouncer: dict[str, Any]) -> str:
    if bouncer.get("used"):
        return (
            f", through a private PgBouncer ({bouncer.get('version')}, transaction mode, pool "
            f"{bouncer.get('default_pool_size')}) on port {bouncer.get('port')} "
            "(DATABASE_POOLER=transaction; checks connect directly)"
        )
    return f"; PgBouncer {bouncer.get('note', 'not used')}" if bouncer else ""


def _server(server: dict[str, Any]) -> str:
    if server.get("kind") == "private cluster":
        return f"a private PostgreSQL cluster on 127.0.0.1:{server['port']}"
    return f"the external server {server.get('url', '?')}"


def _server_note(server: dict[str, Any]) -> str:
    if server.get("kind") == "private cluster":
        return (
            "note: the private cluster is SIGKILLed (postmaster only; crash recovery on "
            "restart) and fast-restarted; besides, every connection to the chaos database is "
            "terminated and the database refuses connections for 1-3 s (ALLOW_CONNECTIONS)."
        )
    return (
        "note: the external PostgreSQL server is not restarted, so the server SIGKILL and "
        "fast-restart faults were NOT injected; its faults are pg_terminate_backend of every "
        "connection to the chaos database and short outages in which that database refuses "
        "connections (ALLOW_CONNECTIONS false)."
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def write_json(path: Path, result: dict[str, Any], verdict: Verdict) -> None:
    document = {
        **result,
        "figures": verdict.figures,
        "checks": [
            {"name": c.name, "passed": c.passed, "detail": c.detail} for c in verdict.checks
        ],
        "evidence": verdict.evidence,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def progress(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
