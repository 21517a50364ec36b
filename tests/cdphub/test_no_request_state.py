"""Admin classes, views and serializers are shared by concurrent requests (a ModelAdmin is one
instance per site): none may keep a request's user or data on ``self``. Checked on the source:
an assignment to ``self.<name>`` whose value reads ``request`` fails."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ("cdphub", "profiles", "crm", "audiences", "consent")


def delivery_modules() -> list[Path]:
    found = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = set(path.relative_to(ROOT).parts)
            name = path.stem
            if "admin" in parts or name.startswith(("admin", "views", "serializers", "endpoints")):
                found.append(path)
    return found


def request_state_on_self(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        on_self = [
            t
            for t in targets
            if isinstance(t, ast.Attribute)
            and isinstance(t.value, ast.Name)
            and t.value.id == "self"
        ]
        reads_request = node.value is not None and any(
            isinstance(n, ast.Name) and n.id in ("request", "request_")
            for n in ast.walk(node.value)
        )
        if on_self and reads_request:
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_the_check_reads_the_delivery_modules():
    names = {str(path.relative_to(ROOT)) for path in delivery_modules()}
    assert {"profiles/admin/profiles.py", "crm/views.py", "consent/serializers.py"} <= names


@pytest.mark.parametrize("path", delivery_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_request_state_on_a_shared_instance(path):
    assert not request_state_on_self(path), (
        "keep per-request state off self (a form class, the row)"
    )


def test_the_check_catches_request_state(tmp_path):
    module = tmp_path / "admin.py"
    module.write_text(
        "class A:\n    def get_formset(self, request):\n        self.user = request.user\n"
    )
    assert request_state_on_self(module, root=tmp_path) == ["admin.py:3"]
