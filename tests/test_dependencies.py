"""The dependency floors and the lock files (docs/testing.md#dependencies-and-the-lock-file).

pyproject.toml says which versions the project works with; requirements/dev.txt (bin/setup,
so bin/test and .ci/run) and requirements/image.txt (the Dockerfile) pin every package with
its hashes, and every install step installs from them with --require-hashes.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import stat
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEV_LOCK = ROOT / "requirements" / "dev.txt"
IMAGE_LOCK = ROOT / "requirements" / "image.txt"

# The first release fixing each published vulnerability that an older floor let in.
CVE_FIXED = {
    "python-multipart": Version("0.0.18"),  # CVE-2024-53981
    "jinja2": Version("3.1.6"),  # CVE-2025-27516
    "requests": Version("2.32.4"),  # CVE-2024-47081
    "cryptography": Version("44.0.1"),  # CVE-2024-12797
    "starlette": Version("0.47.2"),  # CVE-2024-47874 (0.40), CVE-2025-54121 (0.47.2)
    "h11": Version("0.16"),  # CVE-2025-43859
}

# The platforms the locks serve: the Docker image (python:3.11-slim) and a developer's machine.
ENVIRONMENTS = [
    {
        "python_version": "3.11",
        "python_full_version": "3.11.7",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": machine,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
    }
    for machine in ("x86_64", "aarch64")
]


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]


def read_lock(path: Path) -> list[Pin]:
    """The lock's entries; anything but `name==version [; marker] --hash=...` is an error."""
    text = path.read_text().replace("\\\n", " ")
    pins = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})\b", line))
        requirement_text = re.sub(r"--hash=\S+", "", line).strip()
        assert not requirement_text.startswith("-"), f"{path.name}: an option line: {line}"
        requirement = Requirement(requirement_text)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"{path.name}: {requirement.name} is not pinned with =="
        )
        assert requirement.url is None and not requirement.extras, f"{path.name}: {line}"
        assert len(hashes) == line.count("--hash="), f"{path.name}: {requirement.name}: a hash"
        pins.append(
            Pin(
                canonicalize_name(requirement.name),
                Version(specifiers[0].version),
                requirement.marker,
                hashes,
            )
        )
    assert pins, f"{path.name} pins nothing"
    return pins


def pins_for(pins: list[Pin], environment: dict[str, str]) -> dict[str, Version]:
    chosen: dict[str, Version] = {}
    for pin in pins:
        if pin.marker is None or pin.marker.evaluate(environment):
            assert pin.name not in chosen, f"{pin.name} pinned twice for {environment}"
            chosen[pin.name] = pin.version
    return chosen


def floor(requirement: Requirement) -> Version | None:
    bounds = [
        Version(s.version)
        for s in requirement.specifier
        if s.operator in (">=", ">", "==", "~=", "===")
    ]
    return max(bounds, default=None)


def project_requirements(*extras: str) -> list[Requirement]:
    texts = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        texts += PYPROJECT["project"]["optional-dependencies"][extra]
    texts += PYPROJECT["build-system"]["requires"]
    return [Requirement(t) for t in texts]


@pytest.mark.parametrize("name", sorted(CVE_FIXED))
def test_every_floor_is_above_the_published_vulnerabilities(name: str) -> None:
    declared = {
        canonicalize_name(r.name): r
        for r in project_requirements(*PYPROJECT["project"]["optional-dependencies"])
    }
    assert name in declared, f"{name} needs a floor of its own in pyproject.toml"
    lowest = floor(declared[name])
    assert lowest is not None and lowest >= CVE_FIXED[name], (
        f"{name}{declared[name].specifier} allows versions before {CVE_FIXED[name]}"
    )


@pytest.mark.parametrize("lock", [DEV_LOCK, IMAGE_LOCK], ids=lambda p: p.name)
def test_the_lock_pins_every_package_with_its_hashes(lock: Path) -> None:
    pins = read_lock(lock)
    unhashed = [p.name for p in pins if not p.hashes]
    assert not unhashed, f"{lock.name}: no --hash for {unhashed}"
    for environment in ENVIRONMENTS:
        pins_for(pins, environment)


@pytest.mark.parametrize(
    ("lock", "extras"),
    [(DEV_LOCK, ("test",)), (IMAGE_LOCK, ("flower",))],
    ids=["dev.txt", "image.txt"],
)
def test_the_lock_satisfies_pyproject(lock: Path, extras: tuple[str, ...]) -> None:
    """Each requirement of pyproject.toml (and of building the project) has a pin it allows."""
    header = lock.read_text().split("\n", 2)[1]
    assert "--generate-hashes" in header
    for extra in extras:
        assert f"--extra {extra}" in header, f"{lock.name} was not compiled with --extra {extra}"
    for environment in ENVIRONMENTS:
        pinned = pins_for(read_lock(lock), environment)
        for requirement in project_requirements(*extras):
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            name = canonicalize_name(requirement.name)
            assert name in pinned, f"{lock.name} does not pin {name}"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"{lock.name} pins {name}=={pinned[name]}, pyproject.toml wants "
                f"{requirement.specifier}"
            )
        for name, fixed in CVE_FIXED.items():
            if name in pinned:
                assert pinned[name] >= fixed


def test_the_two_locks_agree_on_what_they_share() -> None:
    for environment in ENVIRONMENTS:
        dev = pins_for(read_lock(DEV_LOCK), environment)
        image = pins_for(read_lock(IMAGE_LOCK), environment)
        differ = {n: (dev[n], image[n]) for n in dev.keys() & image.keys() if dev[n] != image[n]}
        assert not differ, f"dev.txt and image.txt pin differently: {differ}"


def test_the_test_environment_is_the_lock_and_the_lock_is_complete() -> None:
    """What bin/test runs on is what the lock pins, and the lock holds every dependency of
    every package it pins (installing it with --no-deps misses nothing)."""
    here = {
        **ENVIRONMENTS[0],
        "python_full_version": ".".join(map(str, sys.version_info[:3])),
        "platform_machine": os.uname().machine,
    }
    pinned = pins_for(read_lock(DEV_LOCK), here)
    for name, version in pinned.items():
        assert Version(importlib.metadata.version(name)) == version, (
            f"{name} installed differs from requirements/dev.txt: run bin/setup"
        )
    wanted = [(r, "") for r in project_requirements("test")]
    seen: set[tuple[str, str]] = set()
    while wanted:
        requirement, extra = wanted.pop()
        if requirement.marker and not requirement.marker.evaluate({**here, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"requirements/dev.txt misses {name} ({requirement})"
        assert requirement.specifier.contains(pinned[name], prereleases=True), str(requirement)
        for wanted_extra in {"", *requirement.extras}:
            if (name, wanted_extra) in seen:
                continue
            seen.add((name, wanted_extra))
            for text in importlib.metadata.requires(name) or []:
                wanted.append((Requirement(text), wanted_extra))


def pip_installs(script: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", script)
    return [m.group(0) for m in re.finditer(r"pip install[^\n&;]*", joined)]


def test_the_dockerfile_installs_from_the_lock_with_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY requirements/image\.txt ", dockerfile, re.M)
    installs = pip_installs(dockerfile)
    assert any("--require-hashes -r requirements/image.txt" in i for i in installs), installs
    for install in installs:
        assert "--require-hashes" in install or "--no-deps" in install, (
            f"an install outside the lock: {install}"
        )


def test_bin_setup_installs_from_the_lock_with_hashes() -> None:
    setup = (ROOT / "bin" / "setup").read_text()
    assert "lock=requirements/dev.txt" in setup
    installs = pip_installs(setup)
    assert any('--require-hashes -r "$lock"' in i for i in installs), installs
    for install in installs:
        assert "--require-hashes" in install or "--no-deps" in install, (
            f"an install outside the lock: {install}"
        )
    # .ci/run and bin/test install nothing themselves: both go through bin/setup.
    assert "bin/test" in (ROOT / ".ci" / "run").read_text()
    assert "\nbin/setup\n" in (ROOT / "bin" / "test").read_text()
    for script in (ROOT / ".ci" / "run", ROOT / "bin" / "test", ROOT / "bin" / "demo"):
        assert not pip_installs(script.read_text()), f"{script.name} installs by itself"


def test_bin_setup_reinstalls_when_the_lock_changes(tmp_path: Path) -> None:
    """bin/setup's stamp covers the lock: a new lock installs again, an unchanged one does not.
    Run on a copy whose .venv/bin/python only records how it was called."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "setup").write_text((ROOT / "bin" / "setup").read_text())
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "requirements").mkdir()
    lock = tmp_path / "requirements" / "dev.txt"
    lock.write_text("one==1 --hash=sha256:" + "0" * 64 + "\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    calls = tmp_path / "calls"
    python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)

    def run_setup() -> list[str]:
        calls.unlink(missing_ok=True)
        subprocess.run(["bash", str(tmp_path / "bin" / "setup")], check=True, timeout=60)
        return calls.read_text().splitlines() if calls.exists() else []

    first = run_setup()
    assert any("--require-hashes -r requirements/dev.txt" in c for c in first), first
    assert run_setup() == []
    lock.write_text("one==2 --hash=sha256:" + "1" * 64 + "\n")
    assert any("--require-hashes" in c for c in run_setup())
