"""Reading an uploaded spreadsheet: streamed from the database, CSV or XLSX, with a clear
message for every way a file can be wrong."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection

from cdphub.sql import execute, query
from crm.models import ImportJob
from crm.resources import ImportSpec, header_token

CHUNK = 1024 * 1024
HEAD = 8192


class ImportRefused(ValidationError):
    """The file as a whole cannot be imported; the message says why and where."""


class StoredFile(io.RawIOBase):
    """A job's file read in slices straight from the database (the column is stored
    uncompressed, so a slice does not load the whole file): bounded memory, and any web server
    or worker can read it."""

    def __init__(self, job_id: int, size: int):
        self.job_id, self.size, self.position = job_id, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        wanted = min(len(buffer), self.size - self.position)
        if wanted <= 0:
            return 0
        ((data,),) = query(
            f"SELECT substring(file_data FROM %b FOR %b) FROM {ImportJob._meta.db_table}"  # noqa: S608 - table names from model metadata; values are parameters
            " WHERE id = %b",
            [self.position + 1, wanted, self.job_id],
        )
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def open_job_file(job: ImportJob) -> io.BufferedReader:
    return io.BufferedReader(StoredFile(job.pk, job.file_size), buffer_size=CHUNK)


def file_check(*, name: str, head: bytes, size: int) -> str:
    """The file's format ("csv" or "xlsx") from its size and first bytes, or ``ImportRefused``
    saying what is wrong. (A file of nothing but white space is refused by ``file_store``.)"""
    limit = settings.CDPHUB_IMPORT_MAX_BYTES
    if size > limit:
        raise ImportRefused(
            f"The file is {size / 1e6:.0f} MB; the limit is {limit / 1e6:.0f} MB. "
            "Split it into smaller files."
        )
    if not head or (size <= len(head) and head.isspace()):
        raise ImportRefused("The file is empty.")
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ImportRefused("Old Excel (.xls) files are not supported: save it as .xlsx or CSV.")
    if b"\x00" in head[:HEAD] and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ImportRefused(f"{name} is not a spreadsheet: upload a CSV or XLSX file.")
    return "csv"


def file_store(job_id: int, stream: BinaryIO, size: int) -> int:
    """Copy ``size`` bytes of the file into the job's row, a slice at a time, and return its
    number of line breaks. Sent as one query parameter, the whole file would be held in memory
    (and buffered again by the driver); COPY streams it. ``ImportRefused`` if the file is
    nothing but white space."""
    lines, blank = 0, True
    execute("CREATE TEMPORARY TABLE import_upload (data bytea) ON COMMIT DROP")
    # Django's cursor only for COPY, which cdphub.sql (bound parameters only) cannot stream.
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy("COPY import_upload (data) FROM STDIN (FORMAT binary)") as copy,
    ):
        # PostgreSQL's binary COPY framing around one row of one field of ``size`` bytes.
        copy.write(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
        copy.write((1).to_bytes(2, "big") + size.to_bytes(4, "big"))
        left = size
        while left:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                raise ImportRefused("The file ended before its announced size.")
            left -= len(chunk)
            lines += chunk.count(b"\n")
            blank = blank and chunk.isspace()
            copy.write(chunk)
        copy.write((-1).to_bytes(2, "big", signed=True))
    if blank:
        raise ImportRefused("The file is empty.")
    execute(
        f"UPDATE {ImportJob._meta.db_table} SET file_data = (SELECT data FROM import_upload)"  # noqa: S608 - table names from model metadata; values are parameters
        " WHERE id = %b",
        [job_id],
    )
    execute("DROP TABLE import_upload")
    return lines


def iter_table(job: ImportJob) -> Iterator[tuple[int, list[str]]]:
    """(spreadsheet row number, cells as text) for every non-empty row, header first."""
    stream = open_job_file(job)
    head = stream.peek(4)[:4]
    rows = iter_xlsx(stream) if head.startswith(b"PK\x03\x04") else iter_csv(stream)
    for number, cells in rows:
        if any(cell.strip() for cell in cells):
            yield number, [cell.strip() for cell in cells]


def iter_csv(stream: io.BufferedReader) -> Iterator[tuple[int, list[str]]]:
    sample = stream.peek(65536)[:65536]
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        lines = io.TextIOWrapper(stream, encoding="utf-16", newline="")
    else:
        lines = utf8_lines(stream)
    try:
        dialect = csv.Sniffer().sniff(sample.decode("utf-8", errors="ignore"), ",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        for cells in reader:
            yield reader.line_num, cells
    except csv.Error as exc:
        raise ImportRefused(f"Row {reader.line_num}: the CSV is malformed ({exc}).") from None


def utf8_lines(stream: io.BufferedReader) -> Iterator[str]:
    """Lines decoded one by one, so a wrong encoding is reported with its line number."""
    for number, raw in enumerate(stream, start=1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportRefused(
                f"Row {number}: the file is not UTF-8 encoded (byte 0x{raw[exc.start]:02x}). "
                "Save it as 'CSV UTF-8' or as XLSX."
            ) from None


def iter_xlsx(stream: io.BufferedReader) -> Iterator[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(stream, read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise ImportRefused("The file is not a readable XLSX workbook.") from None
    try:
        sheet = workbook.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [cell_text(value) for value in values]
    finally:
        workbook.close()


def cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (
            value.isoformat(sep=" ")
            if value.time() != datetime.min.time()
            else (value.date().isoformat())
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# The last column of a rejected rows file (crm.imports.jobs.rejected_rows_file): why the row
# was left out.
REJECTED_REASON_COLUMN = "import error"


def column_map(
    spec: ImportSpec,
    headers: list[str],
    overrides: dict[str, str] | None = None,
    *,
    skip_unknown: bool = False,
) -> tuple[dict[str, str], list[str]]:
    """Header -> field ("-" to ignore), matched by name and synonyms, then the explicit
    overrides; returns the map and the problems (unknown or doubly mapped columns). With
    ``skip_unknown`` a column that is no field is ignored instead (the caller warns)."""
    tokens = {}
    for column in spec.columns:
        for name in (column.name, *column.synonyms):
            tokens.setdefault(header_token(name), column.name)
    overrides = {header_token(h): field for h, field in (overrides or {}).items()}
    # A rejected rows file, fixed, is imported again as it is: its reason column is ignored.
    overrides.setdefault(header_token(REJECTED_REASON_COLUMN), "-")
    mapping, problems, used = {}, [], {}
    for position, header in enumerate(headers, start=1):
        token = header_token(header)
        field = overrides.get(token, tokens.get(token))
        where = f"Column {column_letter(position)} ({header!r})"
        if not header:
            problems.append(f"{where} has no header.")
        elif field is None and skip_unknown:
            mapping[header] = "-"
        elif field is None:
            problems.append(
                f"{where} is not a {spec.resource} field; map it with {header}=FIELD or ignore it "
                f"with {header}=-. Fields: {', '.join(spec.names)}."
            )
        elif field != "-" and field not in spec.names:
            problems.append(
                f"{where} is mapped to {field!r}, which is not a {spec.resource} field."
            )
        elif field != "-" and field in used:
            problems.append(f"{where} and column {used[field]!r} both map to {field!r}.")
        else:
            mapping[header] = field
            if field != "-":
                used[field] = header
    return mapping, problems


def column_letter(position: int) -> str:
    letters = ""
    while position:
        position, remainder = divmod(position - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters
