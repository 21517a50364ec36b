"""What the steps of an import share: a row of the file as it goes through them, and the
small helpers more than one step uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from itertools import islice

from crm.models import ImportJob

Progress = Callable[[ImportJob], None]


@dataclass(slots=True)
class Row:
    number: int
    values: dict = field(default_factory=dict)  # field -> parsed value (non-blank cells only)
    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)  # values kept, with something to point out
    outcome: str = ""  # new / updated / skipped / error
    reason: str = ""
    pk: int | None = None  # the row's record, existing or just inserted
    current: dict | None = None  # an existing record's values (by attname) before the import
    changes: dict = field(default_factory=dict)  # field -> [old, new]
    before: dict | None = None  # previous values of an updated row, for revert

    def fail(self, column: str, message: str, value="") -> None:
        self.errors.append(
            {"row": self.number, "column": column, "value": str(value), "message": message}
        )

    def warn(self, column: str, message: str, value="") -> None:
        self.warnings.append(
            {"row": self.number, "column": column, "value": str(value), "message": message}
        )


def attname(name: str) -> str:
    """The column a file's field is stored in (a custom field's: the record's custom_fields)."""
    if name.startswith("custom."):
        return "custom_fields"
    return "stage_id" if name == "stage" else name


# The columns a deal's stage decides: loaded by the classifier, written by the writer.
STAGE_IMPLIED = ("pipeline_id", "status", "closed_at", "probability", "stage_entered_at")


def json_value(value):
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    return value


def batched(iterable, size: int) -> Iterator[list]:
    iterator = iter(iterable)
    while chunk := list(islice(iterator, size)):
        yield chunk
