"""The apps talk through registries, not through each other's models: the hub (``profiles``)
imports no other app's code but the registries it fills, and ``consent`` imports nothing of
the CRM or the DMP. Checked on the source, function-local imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What an app may import from another: the registries it registers into.
REGISTRIES = {"consent.registry", "consent.retention"}

# app -> what of the other apps it must not import. The hub asks consent's selectors whom it may
# use (consent stands beside the hub), but never reads consent's, the CRM's or the DMP's models.
FORBIDDEN = {
    "profiles": ("crm", "audiences", "consent.models"),
    "consent": ("crm", "audiences"),
}

# Imports known to cross a boundary, each with what will carry the link instead. The list only
# shrinks: a new crossing fails the test.
KNOWN_CROSSINGS: set[tuple[str, str]] = set()


def imports_of(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if "." in node.module:
                modules.add(node.module)
            else:  # from consent import registry
                modules |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
    return modules


def crossings(app: str) -> set[tuple[str, str]]:
    found = set()
    for path in sorted((ROOT / app).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for module in imports_of(path):
            forbidden = any(
                module == prefix or module.startswith(f"{prefix}.") for prefix in FORBIDDEN[app]
            )
            if forbidden and module not in REGISTRIES:
                found.add((str(path.relative_to(ROOT)), module))
    return found


@pytest.mark.parametrize("app", sorted(FORBIDDEN))
def test_an_app_reaches_others_only_through_registries(app):
    new = crossings(app) - KNOWN_CROSSINGS
    assert not new, f"{app} imports other apps' code directly: {sorted(new)}; use a registry"


def test_the_list_of_known_crossings_is_current():
    stale = KNOWN_CROSSINGS - crossings("profiles") - crossings("consent")
    assert not stale, f"no longer crossing, remove from KNOWN_CROSSINGS: {sorted(stale)}"
