"""What the bench prints, and the JSON it writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.metrics import ratio

TARGETS = {
    "batched_triggers_per_s": 5_000,
    "batched_vs_naive": 15.0,
    "single_vs_naive": 2.0,
    "steady_p99_ms": 1_000,
    "long_rss_growth_pct": 10.0,
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
        f"  ours batched:       {_cell(batched, ROWS[0][3])} triggers/s end to end "
        f"(target >= {TARGETS['batched_triggers_per_s']:,}), "
        f"{_times(ratios['triggers_per_s']['ours_batch/naive'])} naive "
        f"(target >= {TARGETS['batched_vs_naive']:g}x)",
        f"  ours 1-at-a-time:   {_times(ratios['triggers_per_s']['ours_single/naive'])} naive "
        f"(target >= {TARGETS['single_vs_naive']:g}x)",
    ]
    incomplete = [name for name, run in runs.items() if not run["complete"]]
    if incomplete:
        lines.append(f"  INCOMPLETE runs (events missing or producer errors): {incomplete}")
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


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
