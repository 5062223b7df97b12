"""The README and the manuals in docs/: every relative link points at a file that exists (and
at a heading that exists, when it names one), and the README stays a front door that leads to
every manual."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MANUALS = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *MANUALS]
FRONT_DOOR_MAX_LINES = 200

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where `[x](y)` is not a link."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(document: Path) -> list[str]:
    text = prose(document.read_text(encoding="utf-8"))
    return _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text)


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation removed, spaces
    to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: keep its text
    text = re.sub(r"[*_`]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in _HEADING.findall(_FENCE.sub("", document.read_text(encoding="utf-8"))):
        anchor = heading_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def broken_links(document: Path) -> list[str]:
    problems = []
    for target in links(document):
        if _EXTERNAL.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        linked = (document.parent / unquote(path_part)).resolve() if path_part else document
        if not linked.exists():
            problems.append(f"{target}: no such file {linked}")
        elif fragment and linked.suffix == ".md" and unquote(fragment) not in anchors(linked):
            problems.append(f"{target}: no heading #{fragment} in {linked.name}")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_exists(document: Path) -> None:
    assert broken_links(document) == []


def test_the_checker_finds_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Its part\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[fine](other.md#its-part) [gone](missing.md) [wrong](other.md#no-part)\n"
        "[here](#page) `[not a link](nowhere.md)`\n\n```\n[nor this](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        f"missing.md: no such file {tmp_path / 'missing.md'}",
        "other.md#no-part: no heading #no-part in other.md",
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Retention: what is kept, and for how long", "retention-what-is-kept-and-for-how-long"),
        ("Production: PostgreSQL + Redis", "production-postgresql--redis"),
        ("Metrics (Prometheus)", "metrics-prometheus"),
        ("The producers' process", "the-producers-process"),
        ("`postback history`", "postback-history"),
    ],
)
def test_anchors_are_githubs(heading: str, anchor: str) -> None:
    assert heading_anchor(heading) == anchor


def test_the_readme_is_a_front_door_that_leads_to_every_manual() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= FRONT_DOOR_MAX_LINES
    assert "\nbin/demo    #" in text and "\nbin/test    #" in text
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in links(README)
        if not _EXTERNAL.match(target)
    }
    assert [m.name for m in MANUALS if m.resolve() not in linked] == []


def test_the_screenshot_is_shown() -> None:
    assert (ROOT / "docs" / "mapping-page.png").is_file()
    assert "docs/mapping-page.png" in links(README)
    assert "mapping-page.png" in links(ROOT / "docs" / "admin.md")


_OURS = ("crm_postback", "worker", "models", "mappings", "bench", "chaos")
_DOTTED = re.compile(rf"^(?:{'|'.join(_OURS)})(?:\.[A-Za-z_]\w*)+$")
_REPO_PATH = re.compile(r"^(?:[\w.-]+/)+[\w.-]*$|^[\w-]+/[\w./-]*\.\w+$")
_GENERATED = ("test-artifacts/",)  # written by failing runs, ignored by git
_FILE_SUFFIXES = (".md", ".py", ".png", ".yml", ".yaml", ".toml")
_CRM_PACKAGES = ("core", "tiktok", "intake", "configuration", "operations", "observability")
_SHORT_DOTTED = re.compile(
    rf"\b(?:{'|'.join(_OURS + _CRM_PACKAGES + ('commands', 'cli', 'web'))})(?:\.[a-z_]\w*)+"
)


def resolves(dotted: str) -> bool:
    """`package.module.attribute...` names a module of ours, or something in one."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        module_name = ".".join(parts[:split])
        try:
            found: object = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def code_spans(document: Path) -> list[str]:
    text = _FENCE.sub("", document.read_text(encoding="utf-8"))
    return [span.strip("`") for span in _CODE_SPAN.findall(text)]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_modules_and_files_exist(document: Path) -> None:
    """A module, function or file named in `code` is still there under that name."""
    missing = [
        span
        for span in code_spans(document)
        if (_DOTTED.match(span) and not resolves(span))
        or (
            _REPO_PATH.match(span)
            and not span.startswith(("../", "/", "shared/", *_GENERATED))
            and not (ROOT / span).exists()
        )
    ]
    assert missing == []


def test_the_flow_in_architecture_names_real_modules() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    names = {n for n in _SHORT_DOTTED.findall(text) if not n.endswith(_FILE_SUFFIXES)}
    assert names, "the flow should name the modules it passes through"
    unknown = [
        name
        for name in sorted(names)
        if not resolves(name) and not resolves(f"crm_postback.{name}")
    ]
    assert unknown == []
