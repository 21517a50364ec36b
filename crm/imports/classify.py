"""New, updated or skipped: each batch's rows are matched on the job's key to the existing records
(only those the person importing may see), checked against the suppression list, and given
their outcome and field changes (the preview shows them; the writer writes them)."""

from __future__ import annotations

from collections import defaultdict

from cdphub.bulk import array_type, quote
from cdphub.sql import query
from crm import services
from crm.customfields import MODELS, definitions
from crm.imports.references import RELATION_FIELDS
from crm.imports.rows import STAGE_IMPLIED, Row, attname
from crm.models import Company, Contact, ImportJob, Stage, Tag
from crm.resources import CUSTOM, ImportSpec
from crm.selectors import visible_to


class Classifier:
    def __init__(self, spec: ImportSpec, job: ImportJob):
        self.spec, self.job = spec, job
        self.key = job.key_field
        model_name = spec.model._meta.model_name
        required = (
            [f for f in definitions(model_name) if f.required] if model_name in MODELS else []
        )
        self.required_custom = required

    def classify(self, rows: list[Row]) -> None:
        live = [row for row in rows if not row.errors]
        names = {name for row in live for name in row.values}
        keys = {row.values[self.key] for row in live if self.key in row.values}
        existing = self.existing(keys, names)
        suppressed = self.suppressed(live)
        tags = self.current_tags(existing) if "tags" in names else {}
        for row in live:
            self.classify_row(row, existing, suppressed, tags)

    def existing(self, keys: set, names: set[str]) -> dict:
        """Key value -> the record's current values (by attname), or a message when several
        records have that key."""
        if not keys:
            return {}
        model = self.spec.model
        # Only the columns the file touches: updates compare and write just those.
        loaded = {"id", attname(self.key)} | {attname(n) for n in names if n != "tags"}
        if "stage" in names:
            loaded |= set(STAGE_IMPLIED)
        columns = sorted(loaded)
        key_field = model._meta.get_field(self.key)
        found, counts = {}, defaultdict(int)
        for values in query(
            f"SELECT {', '.join(quote(model._meta.get_field(c).column) for c in columns)}"  # noqa: S608
            f" FROM {quote(model._meta.db_table)}"
            f" WHERE {quote(key_field.column)} = ANY(%b::{array_type(key_field)}[])",
            [list(keys)],
        ):
            record = dict(zip(columns, values, strict=True))
            value = record[attname(self.key)]
            counts[value] += 1
            found[value] = record
        for value, count in counts.items():
            if count > 1:
                found[value] = (
                    f"{count} existing {self.spec.resource} have {self.key} {value!r}; "
                    "use another key"
                )
        # Out of sight is the same as absent: any other answer would tell the person importing
        # that someone they may not see is known to another team. (A row creating a second
        # record of that person is then caught by the duplicate review.)
        for value in self.hidden_keys(found):
            del found[value]
        return found

    def hidden_keys(self, found: dict) -> list:
        """Keys of existing rows the person importing may not see: an import neither shows nor
        changes another team's records (imports run from a command have no person: no limit)."""
        user = self.job.created_by
        ids = {
            record["id"]: value for value, record in found.items() if not isinstance(record, str)
        }
        if user is None or not ids:
            return []
        visible = visible_to(user, self.spec.model.objects.filter(pk__in=ids))
        seen = set(visible.values_list("pk", flat=True))
        return [value for pk, value in ids.items() if pk not in seen]

    def suppressed(self, rows: list[Row]) -> set:
        if self.spec.model is not Contact:
            return set()
        return services.suppressed_identifiers(
            emails=[row.values.get("email", "") for row in rows],
            phones=[row.values.get("phone", "") for row in rows],
        )

    def current_tags(self, existing: dict) -> dict[int, set[str]]:
        ids = [record["id"] for record in existing.values() if not isinstance(record, str)]
        through = self.spec.model.tags.through
        owner = f"{self.spec.model._meta.model_name}_id"
        tags = defaultdict(set)
        for owner_id, name in query(
            f"SELECT l.{owner}, t.name FROM {quote(through._meta.db_table)} l"  # noqa: S608
            f" JOIN {quote(Tag._meta.db_table)} t ON t.id = l.tag_id"
            f" WHERE l.{owner} = ANY(%b::bigint[])",
            [ids],
        ):
            tags[owner_id].add(name)
        return tags

    def classify_row(self, row: Row, existing: dict, suppressed: set, tags: dict) -> None:
        mode, key = self.job.mode, self.key
        value = row.values.get(key)
        if value is None and mode != ImportJob.Mode.CREATE:
            row.fail(key, f"the key column {key!r} is empty")
            return
        record = existing.get(value) if value is not None else None
        if isinstance(record, str):
            row.fail(key, record, value)
        elif ("email", row.values.get("email")) in suppressed or (
            "phone",
            row.values.get("phone"),
        ) in suppressed:
            row.outcome, row.reason = "skipped", "erased on request (suppression list)"
        elif record is None and mode == ImportJob.Mode.UPDATE:
            row.outcome, row.reason = "skipped", f"no {self.spec.resource} with {key} {value!r}"
        elif record is not None and mode == ImportJob.Mode.CREATE:
            row.outcome, row.reason = "skipped", f"already exists (id {record['id']})"
        elif record is None:
            self.new(row)
        else:
            self.update(row, record, tags.get(record["id"], set()))

    def new(self, row: Row) -> None:
        if "id" in row.values:
            row.fail(
                "id",
                f"no {self.spec.resource} has id {row.values['id']}; leave the id "
                "empty to create a row (ids are given by cdphub)",
                row.values["id"],
            )
            return
        for required in self.spec.required_for_create:
            if required not in row.values and RELATION_FIELDS.get(required) not in row.values:
                row.fail(required, f"is required to create {self.spec.resource}")
        for required in self.required_custom:
            if CUSTOM + required.key not in row.values:
                row.fail(CUSTOM + required.key, f"{required.label} is required")
        if not row.errors:
            row.outcome = "new"

    def update(self, row: Row, record: dict, current_tags: set[str]) -> None:
        row.pk, row.current = record["id"], record
        for name, value in row.values.items():
            if name == "tags":
                if set(value) - current_tags:
                    row.changes["tags"] = [sorted(current_tags), sorted(current_tags | set(value))]
                continue
            if name.startswith(CUSTOM):
                old = (record["custom_fields"] or {}).get(name.removeprefix(CUSTOM))
            else:
                old = record[attname(name)]
            new = value.pk if isinstance(value, Stage) else value
            if isinstance(new, Company):
                new = "(new company)"
            if old != new:
                row.changes[name] = [old, new]
        row.outcome = "updated" if row.changes else "skipped"
        row.reason = "" if row.changes else "no changes"
