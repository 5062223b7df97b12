"""`postback demo` (what `bin/demo` runs) passes on the embedded defaults, in a folder of its
own, and nothing raw of what it sends reaches its output's event bodies or its database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RAW = ("Jane.Doe", "jane.doe", "373-4253", "90001", "sam@example.com", "2132435345")


def test_the_demo_passes_on_the_embedded_defaults(tmp_path: Path) -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("POSTBACK_", "DATABASE_", "BROKER_", "TIKTOK_", "REDIS_"))
    }
    done = subprocess.run(
        [sys.executable, "-m", "crm_postback.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Demo passed" in out
    assert "warning: match_keys.phone: not a possible number" in out
    assert "refused: match_keys.phone" in out
    assert "/10" in out  # the match-quality score
    bodies = [line for line in out.splitlines() if line.lstrip().startswith("{")]
    assert len(bodies) == 4
    assert not [value for value in RAW for body in bodies if value in body]
    database = list((tmp_path / ".postback" / "demo").rglob("*.db*"))
    assert database
    for path in database:
        data = path.read_bytes()
        assert not [value for value in RAW if value.encode() in data], path
