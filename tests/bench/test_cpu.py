"""bench.cpu's /proc readers and the CPU / nodes report tables (no services needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from bench import cpu, report

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_parse_stat_takes_comm_with_spaces_and_parentheses() -> None:
    # proc(5): pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime ...
    line = "42 (a b) c)) S 7 42 42 0 -1 4194560 10 0 0 0 150 50 30 20 20 0 1 0 9999 1000 10"
    stat = cpu.parse_stat(42, line)
    assert stat.comm == "a b) c)"
    assert (stat.ppid, stat.utime, stat.stime, stat.cutime, stat.cstime) == (7, 150, 50, 30, 20)
    assert stat.starttime == 9999
    assert stat.own_seconds == pytest.approx(200 / cpu.CLOCK_TICKS)
    assert stat.with_reaped_seconds == pytest.approx(250 / cpu.CLOCK_TICKS)


@pytest.mark.timeout(30)
def test_read_stat_sees_this_process_burn_cpu() -> None:
    before = cpu.read_stat(os.getpid())
    assert before is not None and before.ppid == os.getppid()
    _burn(0.3)
    after = cpu.read_stat(os.getpid())
    assert after is not None
    assert after.own_seconds - before.own_seconds >= 0.2
    assert cpu.self_seconds() >= after.own_seconds - 0.05
    assert cpu.read_stat(2**22 + 12345) is None  # no such pid


@pytest.mark.timeout(30)
def test_tree_counts_a_live_child_and_then_a_reaped_one() -> None:
    me = os.getpid()
    child = subprocess.Popen(
        [sys.executable, "-c", BURN.format(seconds=0.5) + "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    try:
        start = cpu.tree_seconds([me])
        deadline = time.monotonic() + 20
        child_stat = cpu.read_stat(child.pid)
        while child_stat is not None and child_stat.own_seconds < 0.45:
            assert time.monotonic() < deadline, "the child did not burn its CPU"
            time.sleep(0.05)
            child_stat = cpu.read_stat(child.pid)
        live = cpu.tree_seconds([me])
        assert live - start >= 0.3  # the live child is in the tree
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
    # Reaped: its CPU has moved into this process's cutime/cstime; the tree keeps it.
    reaped = cpu.tree_seconds([me])
    assert reaped >= live - 0.05
    stat = cpu.read_stat(me)
    assert stat is not None and (stat.cutime + stat.cstime) / cpu.CLOCK_TICKS >= 0.45


def test_cpu_figures_per_trigger_and_total_leave_unknown_and_shared_out() -> None:
    figures = cpu.cpu_figures(
        {"postgres_backends": 0.5, "workers": 1.0, "beat": None, "producers": 0.25},
        {"postgres_server_total": 2.0, "redis_server": None},
        1_000,
        window_seconds=2.0,
    )
    assert figures["us_per_trigger"] == {
        "postgres_backends": 500.0,
        "workers": 1000.0,
        "beat": None,
        "producers": 250.0,
    }
    assert figures["total_seconds"] == 1.75
    assert figures["total_us_per_trigger"] == 1750.0
    assert figures["shared_us_per_trigger"] == {
        "postgres_server_total": 2000.0,
        "redis_server": None,
    }
    assert figures["cores_busy"] == 0.88


def _cpu(total: float) -> dict[str, Any]:
    figures = cpu.cpu_figures(
        dict.fromkeys(cpu.COMPONENTS, total / len(cpu.COMPONENTS)),
        dict.fromkeys(cpu.SHARED, None),
        100,
        window_seconds=1.0,
        extra={"method": "test method", "postgres_backends_seen": 3},
    )
    figures["us_per_trigger"]["simulator"] = None  # as with --sim thread
    return figures


def test_render_cpu_has_a_row_per_component_total_and_method() -> None:
    text = report.render_cpu([("ours batched", {"cpu": _cpu(0.5)}), ("naive", {"cpu": _cpu(1.0)})])
    lines = text.splitlines()
    assert "ours batched" in lines[0] and "naive" in lines[0]
    for label, _ in report.CPU_ROWS + report.CPU_SHARED_ROWS:
        assert any(line.strip().startswith(label) for line in lines), label
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[-2:] == ["5,000", "10,000"]
    simulator = next(line for line in lines if line.startswith("simulator"))
    assert simulator.split()[-2:] == ["-", "-"]
    assert lines[-1] == "measured: test method"


def _node_run(duplicates: int, over: int, rate: float) -> dict[str, Any]:
    return {
        "complete": True,
        "triggers_per_s": rate,
        "latency_p50_ms": 1.0,
        "latency_p99_ms": 2.0,
        "events_received": 10,
        "events_expected": 10,
        "events_accepted": 10 + duplicates,
        "events_duplicate": duplicates,
        "deliveries": {
            "postbacks": 10,
            "delivered": 10,
            "attempt_rows": 10 + over,
            "max_attempts": 1,
            "postbacks_with_more_than_one_claim": 0,
            "postbacks_with_more_attempt_rows_than_claims": over,
            "leases_still_held": 0,
        },
        "nodes": [
            {
                "name": "n-0@h",
                "pid": 1,
                "pool_pids": [2, 3],
                "tasks": 1,
                "statements": 5,
                "cpu_seconds": 0.1,
            }
        ],
        "cpu": _cpu(0.1),
    }


def test_nodes_summary_and_report() -> None:
    runs = {"nodes_1": _node_run(0, 0, 100.0), "nodes_2": _node_run(0, 0, 150.0)}
    summary = report.nodes_summary(runs)
    assert summary["ratio_2_over_1"] == 1.5
    assert summary["no_double_sends"] is True
    text = report.render_nodes({"setup": "test setup", "runs": runs, "summary": summary})
    assert "2 nodes / 1 node throughput: 1.50x" in text
    assert "no event sent twice: yes" in text
    assert "CPU µs per trigger" in text and "n-0@h pid 1" in text

    for bad in (_node_run(1, 0, 150.0), _node_run(0, 1, 150.0)):
        runs = {"nodes_1": _node_run(0, 0, 100.0), "nodes_2": bad}
        summary = report.nodes_summary(runs)
        assert summary["no_double_sends"] is False
        assert "no event sent twice: NO" in report.render_nodes(
            {"setup": "", "runs": runs, "summary": summary}
        )
