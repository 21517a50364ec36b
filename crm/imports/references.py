"""References to other records, resolved per batch: owners, companies, contacts, pipelines,
stages and deals named in the rows become ids (or row errors); companies named but unknown are
created by the writer on apply. Tags are not looked up here: the writer links them."""

from __future__ import annotations

from collections import defaultdict

from django.contrib.auth import get_user_model
from django.db.models import Min
from django.db.models.functions import Lower

from crm.imports.rows import Row
from crm.models import Company, Contact, Deal, Pipeline, Stage
from crm.resources import ImportSpec


class References:
    """Looks up owners, companies, contacts, pipelines, stages and deals named in the rows,
    caching across batches; companies named but unknown are created on apply."""

    def __init__(self, spec: ImportSpec):
        self.spec = spec
        self.cache: dict[str, dict] = defaultdict(dict)
        self.new_companies: dict[tuple[str, str], Company] = {}

    def resolve(self, rows: list[Row], *, create: bool) -> None:
        relations = {c.name: c.relation for c in self.spec.columns if c.relation}
        for name, relation in relations.items():
            if relation == "tags":
                continue
            wanted = {row.values[name] for row in rows if name in row.values}
            missing = wanted - self.cache[relation].keys()
            if missing:
                self.cache[relation].update(getattr(self, f"find_{relation}")(missing, rows))
            for row in rows:
                if name in row.values:
                    self.assign(row, name, relation, create)

    def assign(self, row: Row, name: str, relation: str, create: bool) -> None:
        value = row.values.pop(name)
        found = self.cache[relation].get(value)
        target = RELATION_FIELDS[relation]
        if isinstance(found, str):
            row.fail(name, found, value)
        elif found is not None:
            row.values[target] = found
        elif relation.startswith("company"):
            row.values[target] = self.company_to_create(relation, value, create)
        else:
            row.fail(name, f"{value!r} was not found", value)

    def company_to_create(self, relation: str, value: str, create: bool):
        key = (relation, value)
        if key not in self.new_companies:
            fields = (
                {"domain": value, "name": value} if relation.endswith("domain") else {"name": value}
            )
            self.new_companies[key] = Company(**fields)
        return self.new_companies[key]  # saved by the writer, which then knows its id

    def find_user(self, values, rows):
        users = get_user_model().objects.all()
        found = {}
        for user in users.filter(username__in=values):
            found[user.username] = user.pk
        for user in users.annotate(lower_email=Lower("email")).filter(
            lower_email__in=[v.lower() for v in values]
        ):
            for value in values:
                if value.lower() == user.email.lower():
                    found.setdefault(value, user.pk)
        return {
            value: found.get(value, f"no user {value!r} (username or e-mail)") for value in values
        }

    def find_company_by_name(self, values, rows):
        lowered = {v.lower(): v for v in values}
        matches = (
            Company.objects.annotate(lower_name=Lower("name"))
            .filter(lower_name__in=lowered)
            .values("lower_name")
            .annotate(first=Min("id"))
        )
        return {lowered[m["lower_name"]]: m["first"] for m in matches}

    def find_company_by_domain(self, values, rows):
        return dict(Company.objects.filter(domain__in=values).values_list("domain", "id"))

    def find_contact_by_email(self, values, rows):
        matches = Contact.objects.filter(email__in=values).values("email").annotate(first=Min("id"))
        found = {m["email"]: m["first"] for m in matches}
        return {v: found.get(v, f"no contact with e-mail {v!r}") for v in values}

    def find_pipeline(self, values, rows):
        found = dict(Pipeline.objects.filter(name__in=values).values_list("name", "id"))
        return {v: found.get(v, f"no pipeline named {v!r}") for v in values}

    def find_stage(self, values, rows):
        stages = defaultdict(list)
        for stage in Stage.objects.filter(name__in=values).select_related("pipeline"):
            stages[stage.name].append(stage)
        result = {}
        for value in values:
            if not stages[value]:
                result[value] = f"no stage named {value!r}"
            elif len(stages[value]) > 1:
                names = ", ".join(s.pipeline.name for s in stages[value])
                result[value] = f"stage {value!r} exists in several pipelines ({names})"
            else:
                result[value] = stages[value][0]
        return result

    def find_deal_by_name(self, values, rows):
        matches = Deal.objects.filter(name__in=values).values("name").annotate(first=Min("id"))
        found = {m["name"]: m["first"] for m in matches}
        return {v: found.get(v, f"no deal named {v!r}") for v in values}


RELATION_FIELDS = {
    "user": "owner_id",
    "company_by_name": "company_id",
    "company_by_domain": "company_id",
    "contact_by_email": "contact_id",
    "pipeline": "pipeline_id",
    "stage": "stage",
    "deal_by_name": "deal_id",
}
