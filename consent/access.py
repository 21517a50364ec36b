"""The access package (GDPR Art. 15 and 20): what is held about a person, made for the person.

One zip file:
- ``summary.html``, to read: a section per category of ``registry.CATEGORIES`` with a table per
  kind of record, columns labelled, names instead of ids (a purpose, a segment, a source), then
  why and how long the data is processed (the register of processing activities) and the
  person's rights;
- ``data.json``, the same records as they are stored, by category and table (portability);
- a CSV file per table, named after it (``activity/events.csv``).

Tables with nothing in them are left out. Columns pointing at staff users (who changed a record)
are left out everywhere: they identify other people, not the person asking.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from datetime import date, datetime

from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.text import capfirst, slugify

from cdphub.csv_export import SafeDictWriter
from consent import registry
from consent.models import DataSubjectRequest, ProcessingActivity
from consent.registry import Holder, Subject
from profiles.templatetags.profile_tags import readable_table

# The summary shows this many records of a table; the CSV and JSON files hold them all.
SUMMARY_ROWS = 500
# A column empty in every record is left out of the summary (the files keep it).
EMPTY = (None, "", {}, [])


@dataclass
class Table:
    holder: Holder
    rows: list[dict]

    @property
    def key(self) -> str:
        """The table's name in the files: its records' plural name (``consent-records``)."""
        return slugify(str(self.holder.model._meta.verbose_name_plural))

    @property
    def file_name(self) -> str:
        return f"{self.holder.category}/{self.key}.csv"


def access_package(request: DataSubjectRequest, subject: Subject) -> tuple[bytes, list[Table]]:
    """The zip of the access package, and the tables in it."""
    tables = access_tables(subject)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("summary.html", summary_html(request, tables))
        archive.writestr("data.json", data_json(request, tables))
        for table in tables:
            archive.writestr(table.file_name, table_csv(table.rows))
    return buffer.getvalue(), tables


def access_tables(subject: Subject) -> list[Table]:
    """The person's records of every exported holder that has some, in the order the person
    reads them: by category, then by title."""
    tables = []
    for holder in registry.holders():
        if not holder.export:
            continue
        staff = staff_columns(holder.model)
        rows = [
            {key: value for key, value in row.items() if key not in staff}
            for row in holder.rows_for_access(subject)
        ]
        if rows:
            tables.append(Table(holder, rows))
    order = list(registry.CATEGORIES)
    return sorted(tables, key=lambda t: (order.index(t.holder.category), t.holder.title))


def staff_columns(model: type[models.Model]) -> set[str]:
    user_model = get_user_model()
    return {
        name
        for field in model._meta.concrete_fields
        if field.is_relation and field.related_model is user_model
        for name in (field.name, field.attname)
    }


def data_json(request: DataSubjectRequest, tables: list[Table]) -> str:
    data: dict[str, dict[str, list[dict]]] = {}
    for table in tables:
        data.setdefault(table.holder.category, {})[table.key] = table.rows
    document = {
        "request": {"id": request.pk, "kind": request.kind, "generated_at": timezone.now()},
        "data": data,
    }
    return json.dumps(document, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)


def table_csv(rows: list[dict]) -> str:
    stream = io.StringIO()
    writer = SafeDictWriter(stream, list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
    return stream.getvalue()


def csv_cell(value):
    if isinstance(value, dict | list):
        return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)
    return value


# --- The summary ----------------------------------------------------------------------------------


def summary_html(request: DataSubjectRequest, tables: list[Table]) -> str:
    sections = []
    for key, (title, explanation) in registry.CATEGORIES.items():
        held = [summary_table(t) for t in tables if t.holder.category == key]
        if held:
            sections.append({"title": title, "explanation": explanation, "tables": held})
    activities = ProcessingActivity.objects.prefetch_related("purposes").order_by("name")
    context = {
        "request": request,
        "generated_at": timezone.now(),
        "sections": sections,
        "activities": [
            {
                "name": activity.name,
                "description": activity.description,
                "purposes": ", ".join(purpose.name for purpose in activity.purposes.all()),
                "lawful_basis": activity.get_lawful_basis_display(),
                "data_categories": activity.data_categories,
                "recipients": activity.recipients,
                "retention": activity.retention,
                "transfers": activity.third_country_transfers,
            }
            for activity in activities
        ],
        "files": [table.file_name for table in tables],
    }
    return render_to_string("consent/access_summary.html", context)


@dataclass
class Column:
    key: str
    label: str
    field: models.Field | None
    names: dict | None = None  # related rows by id, for a column pointing at another table

    def cell(self, value):
        if value is None or value == "":
            return "–"
        if self.names is not None:
            return str(self.names.get(value, value))
        if self.field is not None and self.field.flatchoices:
            return dict(self.field.flatchoices).get(value, value)
        if isinstance(value, datetime):
            return date_format(timezone.localtime(value), "j M Y, H:i")
        if isinstance(value, date):
            return date_format(value, "j M Y")
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, dict | list):
            return readable_table(value)
        return value


def summary_table(table: Table) -> dict:
    rows = table.rows[:SUMMARY_ROWS]
    columns = [
        column
        for column in summary_columns(table.holder.model, rows)
        if any(row.get(column.key) not in EMPTY for row in rows)
    ]
    return {
        "title": table.holder.title,
        "file_name": table.file_name,
        "columns": [column.label for column in columns],
        "rows": [[column.cell(row.get(column.key)) for column in columns] for row in rows],
        "more": len(table.rows) - len(rows),
    }


def summary_columns(model: type[models.Model], rows: list[dict]) -> list[Column]:
    """The columns a person reads: not the record's own id nor links to the person's other
    records (internal numbers); a link to anything else (a purpose, a segment, a source) shown
    by its name."""
    fields = {}
    for field in model._meta.concrete_fields:
        fields[field.name] = fields[field.attname] = field
    columns = []
    for key in rows[0]:
        field = fields.get(key)
        if key == "id" or (field is not None and field.primary_key):
            continue
        if field is None:
            columns.append(Column(key, capfirst(key.replace("_", " ")), None))
            continue
        label = capfirst(field.verbose_name)
        if not field.is_relation:
            columns.append(Column(key, label, field))
        elif not registry.is_holder(field.related_model):
            ids = {row[key] for row in rows if row.get(key) is not None}
            names = field.related_model._default_manager.in_bulk(ids)
            columns.append(Column(key, label, field, names=names))
    return columns
