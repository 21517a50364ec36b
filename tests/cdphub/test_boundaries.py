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

FORBIDDEN = {
    "profiles": ("crm", "audiences", "consent"),
    "consent": ("crm", "audiences"),
}

# Imports known to cross a boundary, each with what will carry the link instead. The list only
# shrinks: a new crossing fails the test.
KNOWN_CROSSINGS = {
    # rule leaves over consent and the CRM: a registry of rule leaves is to carry them
    ("profiles/segments/rules/profile_target.py", "consent.models"),
    ("profiles/segments/rules/profile_target.py", "crm.models"),
    # exports and processing ask consent whom they may use: a consent service the hub calls
    ("profiles/segments/membership.py", "consent.selectors"),
    ("profiles/ingest/processing.py", "consent.selectors"),
    # the segment export serializer checks the purpose code
    ("profiles/serializers.py", "consent.models"),
}


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
            if module.split(".")[0] in FORBIDDEN[app] and module not in REGISTRIES:
                found.add((str(path.relative_to(ROOT)), module))
    return found


@pytest.mark.parametrize("app", sorted(FORBIDDEN))
def test_an_app_reaches_others_only_through_registries(app):
    new = crossings(app) - KNOWN_CROSSINGS
    assert not new, f"{app} imports other apps' code directly: {sorted(new)}; use a registry"


def test_the_list_of_known_crossings_is_current():
    stale = KNOWN_CROSSINGS - crossings("profiles") - crossings("consent")
    assert not stale, f"no longer crossing, remove from KNOWN_CROSSINGS: {sorted(stale)}"
