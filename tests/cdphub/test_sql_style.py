"""One SQL style in app code: statements go through ``cdphub.sql`` (``%b`` placeholders, bound
server-side), not Django's cursor, and name tables by ``Model._meta.db_table``, never by a
hard-coded ``<app>_<model>``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from django.apps import apps

ROOT = Path(__file__).resolve().parents[2]
APPS = ("cdphub", "profiles", "crm", "consent", "audiences")
EXECUTOR = Path("cdphub/sql.py")

# (file, reason) for the few places that keep a cursor of Django's.
CURSOR_ALLOWED = {
    Path("cdphub/demo/bulk.py"): "COPY of the demo data, which cdphub.sql does not stream",
    Path("crm/importfiles.py"): "COPY of an uploaded file, which cdphub.sql does not stream",
    Path("crm/imports/run.py"): "import progress on a connection of its own, outside the "
    "import's transaction",
    Path("cdphub/paginators.py"): "EXPLAIN of a queryset on that queryset's database "
    "(connections[queryset.db]), with Django's own SQL and parameters",
    Path("cdphub/health.py"): "the readiness probe's SELECT 1 on the connection it is given "
    "(a test gives it one to a server that does not answer)",
}

SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|JOIN)\b")


def app_tables() -> set[str]:
    """The tables of the project's models, auto-created many-to-many tables included."""
    return {
        model._meta.db_table
        for model in apps.get_models(include_auto_created=True)
        if model._meta.app_label in APPS
    }


def is_cursor_call(node: ast.AST) -> bool:
    """``connection.cursor(...)``, ``connections[...].cursor(...)``, or ``.cursor()`` of a
    connection kept in a variable (``side.cursor()``), but not a psycopg cursor's
    ``cursor.cursor`` attribute (used for COPY inside an allowed cursor)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    if node.func.attr != "cursor":
        return False
    owner = node.func.value
    if isinstance(owner, ast.Subscript):
        return isinstance(owner.value, ast.Name) and owner.value.id == "connections"
    return not (isinstance(owner, ast.Name) and owner.id == "cursor")


def sql_strings(tree: ast.AST):
    """(line, text) of every string literal, f-strings by their literal parts."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def offences(path: Path, source: str, tables: set[str]) -> list[str]:
    tree = ast.parse(source, filename=str(path))
    found = []
    for node in ast.walk(tree):
        if is_cursor_call(node):
            found.append(f"{path}:{node.lineno}: a Django cursor; use cdphub.sql.query/execute")
    if tables:
        table_name = re.compile(r"\b(" + "|".join(sorted(map(re.escape, tables))) + r")\b")
        for line, text in sql_strings(tree):
            if not SQL_WORDS.search(text):
                continue
            for match in table_name.finditer(text):
                found.append(
                    f"{path}:{line}: table {match.group(1)} hard-coded in SQL; "
                    "use Model._meta.db_table"
                )
    return found


def app_files():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "migrations" in relative.parts or relative == EXECUTOR:
                continue
            yield relative


def test_app_code_uses_one_sql_style():
    tables = app_tables()
    problems = []
    for relative in app_files():
        for problem in offences(relative, (ROOT / relative).read_text(), tables):
            if relative in CURSOR_ALLOWED and "a Django cursor" in problem:
                continue
            problems.append(problem)
    assert not problems, "\n".join(problems)


def test_allowlist_is_current():
    """Every allowed file still has a cursor (an entry no longer needed is removed)."""
    for relative, reason in CURSOR_ALLOWED.items():
        assert reason
        found = offences(relative, (ROOT / relative).read_text(), set())
        assert found, f"{relative} no longer uses a Django cursor: drop it from CURSOR_ALLOWED"


def test_checker_catches_offending_code(tmp_path):
    snippet = tmp_path / "offender.py"
    snippet.write_text(
        "from django.db import connection, connections\n"
        "\n"
        "def purge(ids):\n"
        "    with connection.cursor() as cursor:\n"
        '        cursor.execute("DELETE FROM profiles_profile WHERE id = ANY(%s)", [ids])\n'
        '    with connections["default"].cursor() as cursor:\n'
        "        cursor.execute(\n"
        '            "SELECT c.id FROM crm_contact c"\n'
        '            f" JOIN {x} t ON t.id = c.id",\n'
        "        )\n"
        "\n"
        'PROSE = "profiles_profile is named in prose, not SQL"\n'
        'URL = "admin:profiles_profile_change"\n'
    )
    found = offences(snippet, snippet.read_text(), app_tables())
    assert any(":4: a Django cursor" in problem for problem in found)
    assert any(":6: a Django cursor" in problem for problem in found)
    assert any(":5: table profiles_profile" in problem for problem in found)
    assert any("table crm_contact" in problem for problem in found)
    assert len(found) == 4, found


def test_checker_accepts_the_style():
    source = (
        "from cdphub.sql import execute\n"
        "from profiles.models import Profile\n"
        "\n"
        "def purge(ids):\n"
        "    return execute(\n"
        '        f"DELETE FROM {Profile._meta.db_table} WHERE id = ANY(%b::bigint[])", [ids]\n'
        "    )\n"
    )
    assert offences(Path("fine.py"), source, app_tables()) == []
