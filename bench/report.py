"""What the bench prints, and the JSON it writes."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.metrics import ratio

# Issue 17's targets; the ratios divide by the naive baseline of the same run.
TARGETS = {
    "batched_vs_naive": 30.0,
    "single_vs_naive": 4.0,
    "steady_p99_ms": 150,
    "long_rss_growth_pct": 10.0,
    "fairness_quiet_p99_ms": 1_000,
}

# (label, key, which way is better, how to print a value)
ROWS: list[tuple[str, str, str, Callable[[Any], str]]] = [
    ("triggers/s end to end", "triggers_per_s", "higher", lambda v: f"{v:,.0f}"),
    ("latency p50 (ms)", "latency_p50_ms", "lower", lambda v: f"{v:,.0f}"),
    ("latency p99 (ms)", "latency_p99_ms", "lower", lambda v: f"{v:,.0f}"),
    ("HTTP requests per event", "http_requests_per_event", "lower", lambda v: f"{v:.4f}"),
    ("DB statements per trigger", "db_statements_per_trigger", "lower", lambda v: f"{v:.3f}"),
    ("peak worker RSS (MiB)", "worker_rss_peak_mib", "lower", lambda v: f"{v:,.0f}"),
    ("peak worker PSS (MiB)", "worker_pss_peak_mib", "lower", lambda v: f"{v:,.0f}"),
    ("ingest triggers/s (producers)", "ingest_triggers_per_s", "higher", lambda v: f"{v:,.0f}"),
    ("DB cursor calls per trigger", "db_cursor_calls_per_trigger", "lower", lambda v: f"{v:.3f}"),
    ("DB transactions per trigger", "db_transactions_per_trigger", "lower", lambda v: f"{v:.3f}"),
    ("DB WAL bytes per trigger", "db_wal_bytes_per_trigger", "lower", lambda v: f"{v:,.0f}"),
    ("Celery tasks per trigger", "worker_tasks_per_trigger", "lower", lambda v: f"{v:.4f}"),
    ("latency p95 (ms)", "latency_p95_ms", "lower", lambda v: f"{v:,.0f}"),
    ("latency max (ms)", "latency_max_ms", "lower", lambda v: f"{v:,.0f}"),
]


def _cell(value: Any, fmt: Callable[[Any], str]) -> str:
    return "-" if value is None else fmt(value)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}x"


def compare_ratios(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    naive = runs["naive"]
    return {
        key: {
            "ours_batch/naive": ratio(runs["ours_batch"].get(key), naive.get(key)),
            "ours_single/naive": ratio(runs["ours_single"].get(key), naive.get(key)),
        }
        for _, key, _, _ in ROWS
    }


def render_compare(result: dict[str, Any]) -> str:
    runs = result["runs"]
    ratios = result["ratios"]
    header = (
        f"{'':<30} {'better':<7} {'batched':>11} {'1-at-a-time':>12} │ "
        f"{'ours':>10} {'ours':>12} {'naive':>10}"
    )
    header2 = (
        f"{'':<30} {'':<7} {'/ naive':>11} {'/ naive':>12} │ "
        f"{'batched':>10} {'1-at-a-time':>12} {'1-at-a-time':>10}"
    )
    lines = [header, header2, "─" * len(header)]
    for label, key, better, fmt in ROWS:
        lines.append(
            f"{label:<30} {better:<7} {_times(ratios[key]['ours_batch/naive']):>11} "
            f"{_times(ratios[key]['ours_single/naive']):>12} │ "
            f"{_cell(runs['ours_batch'].get(key), fmt):>10} "
            f"{_cell(runs['ours_single'].get(key), fmt):>12} "
            f"{_cell(runs['naive'].get(key), fmt):>10}"
        )
    lines.append(
        f"{'events received / expected':<30} {'':<7} {'':>11} {'':>12} │ "
        + " ".join(
            f"{run['events_received']:,}/{run['events_expected']:,}".rjust(width)
            for run, width in (
                (runs["ours_batch"], 10),
                (runs["ours_single"], 12),
                (runs["naive"], 10),
            )
        )
    )
    batched = runs["ours_batch"]["triggers_per_s"]
    lines += [
        "",
        "headline (targets are for a quiet machine):",
        f"  ours batched:       {_cell(batched, ROWS[0][3])} triggers/s end to end, "
        f"{_times(ratios['triggers_per_s']['ours_batch/naive'])} naive "
        f"(target >= {TARGETS['batched_vs_naive']:g}x)",
        f"  ours 1-at-a-time:   {_times(ratios['triggers_per_s']['ours_single/naive'])} naive "
        f"(target >= {TARGETS['single_vs_naive']:g}x)",
    ]
    incomplete = [name for name, run in runs.items() if not run["complete"]]
    if incomplete:
        lines.append(f"  INCOMPLETE runs (events missing or producer errors): {incomplete}")
    cpu_columns = [
        (title, runs[name])
        for name, title in (
            ("ours_batch", "ours batched"),
            ("ours_single", "ours 1-at-a-time"),
            ("naive", "naive"),
        )
        if "cpu" in runs[name]
    ]
    if cpu_columns:
        lines += ["", render_cpu(cpu_columns)]
    return "\n".join(lines)


# (label, key in cpu["us_per_trigger"] or "total")
CPU_ROWS: list[tuple[str, str]] = [
    ("PostgreSQL (run's db backends)", "postgres_backends"),
    ("workers (main + pool)", "workers"),
    ("beat", "beat"),
    ("producers (harness process)", "producers"),
    ("simulator (own process)", "simulator"),
]
CPU_SHARED_ROWS: list[tuple[str, str]] = [
    ("PostgreSQL server, all dbs", "postgres_server_total"),
    ("Redis server (shared)", "redis_server"),
]


def render_cpu(columns: list[tuple[str, dict[str, Any]]]) -> str:
    """CPU µs per trigger per component, one column per run (each run's `cpu` figures)."""
    width = max(12, *(len(title) for title, _ in columns))
    us = lambda v: f"{v:,.0f}"  # noqa: E731
    cpus = [run["cpu"] for _, run in columns]
    lines = [
        f"{'CPU µs per trigger':<32} " + " ".join(f"{title:>{width}}" for title, _ in columns),
        "─" * (33 + (width + 1) * len(columns)),
    ]
    for label, key in CPU_ROWS:
        lines.append(
            f"{label:<32} "
            + " ".join(f"{_cell(cpu['us_per_trigger'].get(key), us):>{width}}" for cpu in cpus)
        )
    lines.append(
        f"{'total (rows above)':<32} "
        + " ".join(f"{_cell(cpu['total_us_per_trigger'], us):>{width}}" for cpu in cpus)
    )
    lines.append(
        f"{'cores busy on average':<32} "
        + " ".join(f"{_cell(cpu['cores_busy'], lambda v: f'{v:.2f}'):>{width}}" for cpu in cpus)
    )
    lines.append(f"{'not in the total (shared):':<32}")
    for label, key in CPU_SHARED_ROWS:
        lines.append(
            f"{'  ' + label:<32} "
            + " ".join(
                f"{_cell(cpu['shared_us_per_trigger'].get(key), us):>{width}}" for cpu in cpus
            )
        )
    lines.append(
        f"{'  PostgreSQL backends seen':<32} "
        + " ".join(f"{cpu.get('postgres_backends_seen', 0):>{width}}" for cpu in cpus)
    )
    lines.append(textwrap.fill("measured: " + cpus[0]["method"], 100, subsequent_indent="  "))
    if not all(cpu.get("postgres_visible", True) for cpu in cpus):
        lines.append("  PostgreSQL backends not visible in this machine's /proc: row left empty")
    return "\n".join(lines)


def nodes_summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Throughput of 1 vs 2 nodes and the no-double-send checks of both runs."""
    one, two = runs["nodes_1"], runs["nodes_2"]
    double_sends = {
        label: {
            "events_duplicate": run["events_duplicate"],
            "postbacks_with_more_attempt_rows_than_claims": run.get("deliveries", {}).get(
                "postbacks_with_more_attempt_rows_than_claims"
            ),
            "postbacks_with_more_than_one_claim": run.get("deliveries", {}).get(
                "postbacks_with_more_than_one_claim"
            ),
        }
        for label, run in runs.items()
    }
    clean = all(
        check["events_duplicate"] == 0
        and check["postbacks_with_more_attempt_rows_than_claims"] == 0
        and check["postbacks_with_more_than_one_claim"] == 0
        for check in double_sends.values()
    )
    return {
        "triggers_per_s": {"1_node": one["triggers_per_s"], "2_nodes": two["triggers_per_s"]},
        "ratio_2_over_1": ratio(two["triggers_per_s"], one["triggers_per_s"]),
        "double_sends": double_sends,
        "no_double_sends": clean,
    }


def render_nodes(result: dict[str, Any]) -> str:
    runs = result["runs"]
    summary = result["summary"]
    titles = (("nodes_1", "1 node"), ("nodes_2", "2 nodes"))
    lines = [
        f"nodes: ours, batched ingest; {result['setup']}",
        f"{'':<40} {'1 node':>12} {'2 nodes':>12}",
        "─" * 66,
    ]

    def row(label: str, values: list[Any], fmt: Callable[[Any], str]) -> None:
        lines.append(f"{label:<40} " + " ".join(f"{_cell(v, fmt):>12}" for v in values))

    def deliveries(key: str) -> list[Any]:
        return [runs[name].get("deliveries", {}).get(key) for name, _ in titles]

    plain = lambda v: f"{v:,}"  # noqa: E731
    for label, key, _, fmt in (ROWS[0], ROWS[1], ROWS[2]):
        row(label, [runs[name].get(key) for name, _ in titles], fmt)
    row(
        "events received / expected",
        [f"{runs[n]['events_received']:,}/{runs[n]['events_expected']:,}" for n, _ in titles],
        str,
    )
    row("simulator: events accepted", [runs[n].get("events_accepted") for n, _ in titles], plain)
    row("simulator: duplicate event_ids", [runs[n]["events_duplicate"] for n, _ in titles], plain)
    row("postbacks / delivered", [
        f"{d['postbacks']:,}/{d['delivered']:,}" if d else None
        for d in (runs[n].get("deliveries") for n, _ in titles)
    ], str)  # fmt: skip
    row("delivery_attempts rows", deliveries("attempt_rows"), plain)
    row("max claims (attempts) per postback", deliveries("max_attempts"), plain)
    row("postbacks claimed more than once", deliveries("postbacks_with_more_than_one_claim"), plain)
    row(
        "postbacks with > 1 attempt per claim",
        deliveries("postbacks_with_more_attempt_rows_than_claims"),
        plain,
    )
    row("leases still held at the end", deliveries("leases_still_held"), plain)
    for name, title in titles:
        for node in runs[name].get("nodes", []):
            lines.append(
                f"  {title}: {node['name']} pid {node['pid']}, pool {node['pool_pids']}, "
                f"{node['tasks']:,} tasks, {node['statements']:,} statements, "
                f"{_cell(node.get('cpu_seconds'), lambda v: f'{v:.2f}')} CPU s"
            )
    lines += [
        "",
        f"2 nodes / 1 node throughput: {_times(summary['ratio_2_over_1'])}",
        "no event sent twice: "
        + ("yes (0 duplicates, <= 1 attempt per claim)" if summary["no_double_sends"] else "NO"),
        "",
        render_cpu([(title, runs[name]) for name, title in titles if "cpu" in runs[name]]),
    ]
    incomplete = [name for name, run in runs.items() if not run["complete"]]
    if incomplete:
        lines.append(f"INCOMPLETE runs (events missing or producer errors): {incomplete}")
    return "\n".join(lines)


def render_steady(result: dict[str, Any]) -> str:
    run = result["run"]
    p99 = run["latency_p99_ms"]
    return "\n".join(
        [
            f"steady: asked {result['rate']:,.0f} triggers/s for {result['seconds']:g} s "
            f"({run['design']}, {run['ingest']} ingest from {run['producers']} producer(s))",
            f"  achieved ingest rate    {run['ingest_triggers_per_s']:>10,.0f} triggers/s",
            f"  end to end              {_cell(run['triggers_per_s'], ROWS[0][3]):>10} triggers/s",
            f"  latency p50 / p95       {_cell(run['latency_p50_ms'], ROWS[1][3]):>10} / "
            f"{_cell(run['latency_p95_ms'], ROWS[1][3])} ms",
            f"  latency p99 / max       {_cell(p99, ROWS[1][3]):>10} / "
            f"{_cell(run['latency_max_ms'], ROWS[1][3])} ms "
            f"(target p99 <= {TARGETS['steady_p99_ms']:,} ms at 1,000/s)",
            f"  HTTP requests per event {_cell(run['http_requests_per_event'], ROWS[3][3]):>10}",
            f"  DB statements/trigger   {_cell(run['db_statements_per_trigger'], ROWS[4][3]):>10}",
            f"  peak worker RSS         {run['worker_rss_peak_mib']:>10,.0f} MiB",
            f"  events received         {run['events_received']:,}/{run['events_expected']:,}"
            + ("" if run["complete"] else "  INCOMPLETE"),
        ]
    )


def render_long(result: dict[str, Any]) -> str:
    rss = result["rss"]
    growth = rss["growth_pct"]
    return "\n".join(
        [
            f"long: {result['triggers']:,} triggers, batched ingest "
            f"(backlog capped at {result['max_backlog']:,})",
            f"  end to end              {_cell(result['triggers_per_s'], ROWS[0][3]):>10} "
            f"triggers/s over {result['end_to_end_seconds']:,.0f} s",
            f"  worker RSS after warm-up {rss['warm_mib']:>9,.0f} MiB "
            f"(at {rss['warm_at_share']:.0%} delivered)",
            f"  worker RSS at the end   {rss['end_mib']:>10,.0f} MiB, max after warm-up "
            f"{rss['max_after_warm_mib']:,.0f} MiB",
            f"  growth after warm-up    {_cell(growth, lambda v: f'{v:+.1f}'):>10} % "
            f"(target < {TARGETS['long_rss_growth_pct']:g} %)",
            f"  worker PSS warm -> end  {_cell(rss['warm_pss_mib'], ROWS[5][3]):>10} -> "
            f"{_cell(rss['end_pss_mib'], ROWS[5][3])} MiB "
            f"({_cell(rss['pss_growth_pct'], lambda v: f'{v:+.1f}')} %)",
            f"  DB size at the end      {result['db_size_mib']:>10,.0f} MiB",
            f"  HTTP requests per event {_cell(result['http_requests_per_event'], ROWS[3][3]):>10}",
            f"  events received         {result['events_unique']:,}/{result['triggers']:,} "
            f"(duplicates {result['events_duplicate']:,})"
            + ("" if result["complete"] else "  INCOMPLETE"),
            f"  RSS samples             {result['rss_csv']}",
        ]
    )


def render_fairness(result: dict[str, Any]) -> str:
    alone = result["runs"]["without_backlog"]
    busy = result["runs"]["with_backlog"]
    backlog = result["backlog"]
    overlap = result["overlap"]
    config = result["config"]
    ms = ROWS[1][3]
    plain = lambda v: f"{v:,}"  # noqa: E731
    lines = [
        f"fairness: quiet set {alone['event_set']}, one trigger at a time at "
        f"{config['quiet_rate']:g}/s; backlog on {backlog['event_set']}: "
        f"{backlog['triggers']:,} triggers in batches of {config['batch']:,} from "
        f"{backlog['producers']} producer(s)",
        f"{'quiet set (accepted -> acknowledged)':<40} {'no backlog':>12} {'backlog':>12}",
        "─" * 66,
    ]

    def row(label: str, key: str, fmt: Callable[[Any], str]) -> None:
        lines.append(
            f"{label:<40} {_cell(alone.get(key), fmt):>12} {_cell(busy.get(key), fmt):>12}"
        )

    row("triggers measured", "latency_measured", plain)
    row("latency p50 (ms)", "latency_p50_ms", ms)
    row("latency p99 (ms)", "latency_p99_ms", ms)
    row("latency max (ms)", "latency_max_ms", ms)
    row("achieved rate (triggers/s)", "achieved_rate", lambda v: f"{v:.1f}")
    received = [f"{run['events_received']:,}/{run['events_expected']:,}" for run in (alone, busy)]
    lines.append(f"{'events received / expected':<40} {received[0]:>12} {received[1]:>12}")
    pending = (
        overlap["backlog_pending_at_quiet_accept_min"],
        overlap["backlog_pending_at_quiet_accept_median"],
        overlap["backlog_pending_at_quiet_accept_max"],
    )
    secs = lambda v: f"{v:,.1f}"  # noqa: E731
    lines += [
        "",
        f"backlog: {backlog['triggers']:,} triggers stored in {backlog['ingest_seconds']:,.1f} s "
        f"({backlog['ingest_triggers_per_s']:,.0f}/s), drained in "
        f"{_cell(backlog['drain_seconds'], secs)} s "
        f"({_cell(backlog['triggers_per_s'], ROWS[0][3])} triggers/s end to end), "
        f"events {backlog['events_received']:,}/{backlog['events_expected']:,}; its own "
        f"latency p50 {_cell(backlog['latency_p50_ms'], ms)} ms, p99 "
        f"{_cell(backlog['latency_p99_ms'], ms)} ms",
        f"overlap: the quiet producer started with "
        f"{_cell(overlap['quiet_started_at_stored'], plain)} backlog triggers stored (asked "
        f"{overlap['quiet_start_threshold']:,}); its first trigger was accepted "
        f"{_cell(overlap['quiet_started_after_seconds'], secs)} s after the backlog's first "
        f"call, {_cell(overlap['overlap_seconds'], secs)} s before the backlog's last event "
        f"arrived",
        f"  {overlap['quiet_during_backlog']:,} quiet triggers accepted while the backlog was "
        f"pending (backlog events not yet acknowledged at their acceptance: min "
        f"{_cell(pending[0], plain)}, median {_cell(pending[1], plain)}, max "
        f"{_cell(pending[2], plain)}); {overlap['quiet_after_drain']:,} after, not in the "
        f"backlog column",
        f"duplicate / unexpected events: {alone['events_duplicate']:,} / "
        f"{alone['events_unexpected']:,} without, {busy['events_duplicate']:,} / "
        f"{busy['events_unexpected']:,} with the backlog",
        f"target: quiet p99 <= {result['target_p99_ms']:,} ms with the backlog: "
        + ("met" if result["target_met"] else "NOT met")
        + f" ({_cell(busy['latency_p99_ms'], ms)} ms)",
    ]
    incomplete = [
        name
        for name, run in (("without backlog", alone), ("with backlog", busy), ("backlog", backlog))
        if not run["complete"]
    ]
    if incomplete:
        lines.append(f"INCOMPLETE (events missing, duplicated or producer errors): {incomplete}")
    return "\n".join(
        textwrap.fill(line, 100, subsequent_indent="  ") if len(line) > 100 else line
        for line in lines
    )


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
