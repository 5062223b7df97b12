"""The import-linter contracts in pyproject.toml encode the dependency rule of the architecture:
checked here on made-up graphs, one import at a time, and for covering every package.
`lint-imports` (bin/test) applies the same contracts to the real imports."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path
from typing import Any

import grimp
import importlinter.configuration
import pytest
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.independence import IndependenceContract
from importlinter.contracts.layers import LayersContract
from importlinter.domain.contract import Contract

import crm_postback

importlinter.configuration.configure()  # what lint-imports sets up (the contracts' timer)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]

# The rule, highest first. Packages of one layer may import each other, except where
# INDEPENDENT says otherwise.
RULE = [
    ["crm_postback.cli", "crm_postback.web", "crm_postback.api", "crm_postback.http_client"],
    ["crm_postback.commands"],
    ["worker"],
    ["crm_postback.operations"],
    ["crm_postback.configuration"],
    ["crm_postback.intake"],
    ["crm_postback.observability"],
    ["mappings"],
    ["models", "crm_postback.tiktok", "crm_postback.simulator"],
    ["crm_postback.core"],
]
# Same-layer imports that break the rule; the simulator may import the TikTok contract.
FORBIDDEN_SIDEWAYS = {
    ("models", "crm_postback.tiktok"),
    ("crm_postback.tiktok", "models"),
    ("models", "crm_postback.simulator"),
    ("crm_postback.simulator", "models"),
    ("crm_postback.tiktok", "crm_postback.simulator"),
}
PACKAGES = [name for layer in RULE for name in layer]

_CONTRACT_TYPES: dict[str, type[Contract]] = {
    "layers": LayersContract,
    "independence": IndependenceContract,
    "forbidden": ForbiddenContract,
}


def _contracts() -> list[Contract]:
    session = {"root_packages": CONFIG["root_packages"]}
    contracts = []
    for raw in CONFIG["contracts"]:
        options: dict[str, Any] = {k: v for k, v in raw.items() if k not in ("name", "type")}
        contracts.append(_CONTRACT_TYPES[raw["type"]](raw["name"], session, options))
    return contracts


def _graph_with(importer: str, imported: str) -> grimp.ImportGraph:
    """Every package of the rule, each with one module, and one import between two of them,
    made inside a function (lazy imports count like any other)."""
    graph = grimp.ImportGraph()
    graph.add_module("crm_postback")
    for package in PACKAGES:
        graph.add_module(package)
        graph.add_module(f"{package}.module")
    graph.add_import(
        importer=f"{importer}.module",
        imported=f"{imported}.module",
        line_number=12,
        line_contents=f"    from {imported} import module",
    )
    return graph


def _broken_by(importer: str, imported: str) -> list[str]:
    graph = _graph_with(importer, imported)
    return [c.name for c in _contracts() if not c.check(graph, verbose=False).kept]


def _level(package: str) -> int:
    return next(i for i, layer in enumerate(RULE) if package in layer)


PAIRS = [(a, b) for a in PACKAGES for b in PACKAGES if a != b]


@pytest.mark.parametrize(("importer", "imported"), PAIRS)
def test_an_import_breaks_a_contract_exactly_when_it_breaks_the_rule(
    importer: str, imported: str
) -> None:
    upward = _level(importer) > _level(imported)
    sideways_forbidden = (importer, imported) in FORBIDDEN_SIDEWAYS
    breaks_rule = upward or sideways_forbidden
    assert bool(_broken_by(importer, imported)) == breaks_rule, (
        f"{importer} -> {imported} {'breaks' if breaks_rule else 'keeps'} the rule"
    )


def test_the_simulator_may_import_only_the_tiktok_contract_and_core() -> None:
    allowed = {
        imported
        for imported in PACKAGES
        if imported != "crm_postback.simulator"
        and not _broken_by("crm_postback.simulator", imported)
    }
    assert allowed == {"crm_postback.tiktok", "crm_postback.core"}


def test_every_package_of_crm_postback_has_a_layer() -> None:
    """A new package under crm_postback/ must be given its place in the rule."""
    children = {
        f"crm_postback.{info.name}"
        for info in pkgutil.iter_modules(crm_postback.__path__)
        if info.name != "__main__"
    }
    layered = {
        package.strip()
        for raw in CONFIG["contracts"]
        if raw["type"] == "layers"
        for layer in raw["layers"]
        for package in layer.replace("|", ":").split(":")
    }
    assert children - layered == set()
    assert set(CONFIG["root_packages"]) - {"crm_postback"} <= layered
    assert layered == set(PACKAGES)
