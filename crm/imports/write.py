"""Writing a batch (on apply): set-based inserts and updates of the rows, the companies and tags
they name, and the change journal (``change_log``, one ``ImportChange`` row per batch and model)
written in the same transaction, which is what revert undoes."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from cdphub.bulk import objects_insert, quote, values_insert, values_update
from cdphub.sql import query
from crm import services
from crm.imports.rows import STAGE_IMPLIED, Row, attname, json_value
from crm.models import Company, Deal, ImportChange, ImportJob, Stage, Tag
from crm.resources import CUSTOM, ImportSpec


class Writer:
    def __init__(self, spec: ImportSpec, job: ImportJob):
        self.spec, self.job, self.model = spec, job, spec.model
        self.label = spec.model._meta.label_lower

    def write(self, rows: list[Row]) -> None:
        self.create_companies(rows)
        new = [row for row in rows if row.outcome == "new"]
        updated = [row for row in rows if row.outcome == "updated"]
        self.create(new)
        self.update(updated)
        self.add_tags(new + updated)
        if self.model is Deal:
            self.record_stage_changes(new, updated)
        created = ImportChange.Action.CREATED
        change_log(self.job, self.label, created, [r.pk for r in new], [r.number for r in new])
        change_log(
            self.job,
            self.label,
            ImportChange.Action.UPDATED,
            [row.pk for row in updated],
            [row.number for row in updated],
            befores=[row.before for row in updated],
        )

    def create_companies(self, rows: list[Row]) -> None:
        pending = {
            id(company): company
            for row in rows
            if row.outcome in ("new", "updated")
            for company in [row.values.get("company_id")]
            if isinstance(company, Company) and company.pk is None
        }
        if pending:
            ids = objects_insert(Company, list(pending.values()))
            change_log(self.job, "crm.company", ImportChange.Action.CREATED, ids)
        for row in rows:
            if isinstance(row.values.get("company_id"), Company):
                row.values["company_id"] = row.values["company_id"].pk
                if "company_id" in row.changes:
                    row.changes["company_id"][1] = row.values["company_id"]

    def fields_of(self, row: Row) -> dict:
        """The row's values by attname, with what a deal's stage implies; its custom fields
        merged into the record's others."""
        custom = {k.removeprefix(CUSTOM): v for k, v in row.values.items() if k.startswith(CUSTOM)}
        values = {
            attname(k): v
            for k, v in row.values.items()
            if k not in ("tags", "id") and not k.startswith(CUSTOM)
        }
        if custom:
            values["custom_fields"] = {**((row.current or {}).get("custom_fields") or {}), **custom}
        if isinstance(values.get("stage_id"), Stage):
            stage = values["stage_id"]
            implied = services.deal_stage_fields(stage)
            values["stage_id"] = stage.pk
            values.setdefault("pipeline_id", stage.pipeline_id)
            values["status"], values["closed_at"] = implied["status"], implied["closed_at"]
            values["stage_entered_at"] = implied["stage_entered_at"]
            if implied["status"] != Deal.Status.OPEN or "probability" not in values:
                values["probability"] = implied["probability"]
        return values

    def create(self, rows: list[Row]) -> None:
        ids = values_insert(self.model, [self.fields_of(row) for row in rows])
        for row, pk in zip(rows, ids, strict=True):
            row.pk = pk

    def update(self, rows: list[Row]) -> None:
        """Each row writes the fields that changed (and what a changed stage implies); their
        previous values are kept for revert."""
        written = []
        for row in rows:
            changed = {attname(name) for name in row.changes}
            if "stage_id" in changed:
                changed.update(STAGE_IMPLIED)
            fields = {k: v for k, v in self.fields_of(row).items() if k in changed}
            row.before = {name: json_value(row.current[name]) for name in fields}
            if fields:
                written.append((row.pk, fields))
        values_update(self.model, written)

    def record_stage_changes(self, new: list[Row], updated: list[Row]) -> None:
        """The deals' history: created in their stage, or moved by the file (logged, so a
        revert removes the moves along with the values)."""
        moves = [(row.pk, None, self.fields_of(row)["stage_id"]) for row in new]
        moves += [
            (row.pk, row.current["stage_id"], self.fields_of(row)["stage_id"])
            for row in updated
            if "stage" in row.changes or "stage_id" in row.changes
        ]
        ids = services.stage_changes_record(moves, self.job.created_by)
        change_log(self.job, "crm.dealstagechange", ImportChange.Action.CREATED, ids)

    def add_tags(self, rows: list[Row]) -> None:
        """Links rows to their tags (creating the tags that do not exist); the links and tags
        really added are logged, so revert removes exactly those."""
        wanted = {name for row in rows for name in row.values.get("tags", ())}
        if not wanted:
            return
        ids = self.tag_ids(wanted)
        through = self.model.tags.through
        owner = f"{self.model._meta.model_name}_id"
        pairs = [(row.pk, ids[name]) for row in rows for name in row.values.get("tags", ())]
        added = query(
            f"INSERT INTO {quote(through._meta.db_table)} ({owner}, tag_id)"  # noqa: S608
            " SELECT * FROM unnest(%b::bigint[], %b::bigint[])"
            " ON CONFLICT DO NOTHING RETURNING id",
            [[pk for pk, _ in pairs], [tag for _, tag in pairs]],
        )
        label = through._meta.label_lower
        change_log(self.job, label, ImportChange.Action.CREATED, [pk for (pk,) in added])

    def tag_ids(self, names: set[str]) -> dict[str, int]:
        find = f"SELECT name, id FROM {quote(Tag._meta.db_table)} WHERE name = ANY(%b::text[])"  # noqa: S608
        ids = dict(query(find, [sorted(names)]))
        missing = sorted(names - ids.keys())
        if missing:
            created = objects_insert(Tag, [Tag(name=name) for name in missing], skip_conflicts=True)
            change_log(self.job, "crm.tag", ImportChange.Action.CREATED, created)
            ids.update(query(find, [missing]))  # with those another import created meanwhile
        return ids


def change_log(
    job: ImportJob,
    label: str,
    action: str,
    ids: list[int],
    row_numbers: list[int] | None = None,
    *,
    befores: list | None = None,
) -> None:
    """One ``ImportChange`` row for what a batch did to one model (nothing when it did
    nothing), written with binary arrays: it is on every batch's path."""
    if not ids:
        return
    query(
        f"INSERT INTO {quote(ImportChange._meta.db_table)}"  # noqa: S608
        " (job_id, model, action, object_ids, row_numbers, befores)"
        " VALUES (%b, %b, %b, %b::bigint[], %b::integer[], %b::jsonb)",
        [
            job.pk,
            label,
            action,
            ids,
            row_numbers or [],
            None if befores is None else Jsonb(befores),
        ],
        fetch=False,
    )
