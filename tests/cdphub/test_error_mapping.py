"""One error mapping: services raise domain errors (or Django's ValidationError), the API's
exception handler answers them in the ``{code, message, errors}`` shape, and views do not
catch them one by one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError

from cdphub.api import exception_handler
from cdphub.errors import DomainError
from cdphub.outbound import OutboundRefused
from consent.dsar import DsarError
from profiles.resolution.merges import MergeRefused
from profiles.segments.rules import RuleError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("error", "errors"),
    [
        (
            MergeRefused("this merge was already undone"),
            {"non_field_errors": ["this merge was already undone"]},
        ),
        (
            DsarError("a rectification needs the corrected values", field="corrections"),
            {"corrections": ["a rectification needs the corrected values"]},
        ),
        (
            RuleError([{"path": "all.0", "message": "unknown operator"}]),
            {"rule": ["all.0: unknown operator"]},
        ),
        (
            OutboundRefused("10.0.0.1 is a private address"),
            {"url": ["URL refused: 10.0.0.1 is a private address"]},
        ),
        (DjangoValidationError({"email": "not an address"}), {"email": ["not an address"]}),
        (DjangoValidationError("refused"), {"non_field_errors": ["refused"]}),
    ],
)
def test_domain_errors_answer_400_in_the_error_shape(error, errors):
    response = exception_handler(error, {})
    assert response.status_code == 400
    assert response.data["code"] == "invalid"
    assert response.data["errors"] == errors
    assert response.data["message"].startswith("Invalid input: ")


def domain_error_names() -> set[str]:
    names, pending = set(), [DomainError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names | {"ValidationError", "DjangoValidationError"}


def view_modules() -> list[Path]:
    apps = ("cdphub", "profiles", "crm", "audiences", "consent")
    return [
        path
        for app in apps
        for path in sorted((ROOT / app).rglob("*.py"))
        if path.stem in ("views", "endpoints") and "migrations" not in path.parts
    ]


@pytest.mark.parametrize("path", view_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_views_leave_domain_errors_to_the_handler(path):
    caught = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            types = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            for kind in types:
                name = kind.attr if isinstance(kind, ast.Attribute) else getattr(kind, "id", "")
                if name in domain_error_names():
                    caught.append(f"{path.relative_to(ROOT)}:{node.lineno} catches {name}")
    assert not caught, caught
