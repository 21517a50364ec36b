"""The CRM's leaves in the segment rule language:

- ``{"crm": "<field>", "op": ..., "value": ...}``: a field of one of the person's contacts (or
  an open deal's stage), or ``custom.<key>`` for a contact custom field, compared as its type
  (numbers and dates with gt/lt, several choices with contains);
- ``{"account": "<field>", "op": ..., "value": ...}``: a field of one of the person's accounts
  (the companies of their group calls): ``name``, ``industry``, ``size``, ``country``,
  ``group_id``, ``trait.<key>`` for a kept group trait (``trait.plan``), or an account figure
  compared with a number (``people``, ``active_people_30d``, ``revenue``): "people at accounts
  on plan X with more than 5 active people" is one rule, one query."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from crm.accounts import with_account_figures
from crm.customfields import definitions
from crm.models import AccountMember, Company, Contact, CustomField, Deal
from profiles.segments.builder import field_entry
from profiles.segments.rules.jsonvalue import value_compare
from profiles.segments.rules.language import Context, Leaf, comparison_check, join
from profiles.segments.rules.profile_target import (
    COMPARISON_KEYS,
    field_condition,
    register_leaf,
)

# rule field -> lookup on crm.Contact; "deal_stage" means an open deal in that stage.
CRM_FIELDS = {
    "lifecycle_stage": "lifecycle_stage",
    "owner": "owner__username",
    "country": "country",
    "job_title": "job_title",
    "company": "company__name",
    "tag": "tags__name",
    "deal_stage": "stage__name",
}
CRM_OPERATORS = ("eq", "neq", "in", "not_in", "contains", "starts_with", "exists")


CUSTOM = "custom."


def crm_validate(node: dict, path: str, ctx: Context) -> None:
    name = node["crm"]
    if isinstance(name, str) and name.startswith(CUSTOM):
        custom_validate(name.removeprefix(CUSTOM), node, path, ctx)
        return
    if name not in CRM_FIELDS:
        ctx.error(
            path,
            f"unknown CRM field {name!r}; expected one of: {', '.join(CRM_FIELDS)}, or "
            "custom.<key> (a contact custom field)",
        )
        return
    comparison_check(node, path, ctx, operators=CRM_OPERATORS)
    value = node.get("value")
    values = value if isinstance(value, list) else [value]
    op = node.get("op", "eq" if "value" in node else "exists")
    if op != "exists" and any(not isinstance(v, str) for v in values):
        ctx.error(join(path, "value"), "CRM fields compare with strings")
    elif name == "lifecycle_stage" and op in ("eq", "neq", "in", "not_in"):
        unknown = [v for v in values if v not in Contact.LifecycleStage.values]
        if unknown:
            ctx.error(
                join(path, "value"),
                f"unknown lifecycle stage {unknown[0]!r}; expected one "
                f"of: {', '.join(Contact.LifecycleStage.values)}",
            )


def custom_validate(key: str, node: dict, path: str, ctx: Context) -> None:
    defined = {field.key: field for field in definitions(Contact)}
    if key not in defined:
        known = ", ".join(CUSTOM + k for k in defined) or "none are defined"
        ctx.error(path, f"no contact custom field {key!r} (contact custom fields: {known})")
        return
    comparison_check(node, path, ctx)


def crm_compile(node: dict, ctx: Context) -> Q:
    name, value = node["crm"], node.get("value")
    op = node.get("op", "eq" if "value" in node else "exists")
    if name.startswith(CUSTOM):
        condition = value_compare(
            "custom_fields", name.removeprefix(CUSTOM), op, value, has_value="value" in node
        )
        return Q(Exists(Contact.objects.filter(condition, profile=OuterRef("pk"))))
    lookup = CRM_FIELDS[name]
    if name == "deal_stage":
        rows = Deal.objects.filter(contact__profile=OuterRef("pk"), status=Deal.Status.OPEN)
    else:
        rows = Contact.objects.filter(profile=OuterRef("pk"))
    return Q(Exists(rows.filter(field_condition(lookup, op, value))))


# The rule builder's labels and value types of the CRM fields and custom field types.
CRM_FIELD_LABELS = {
    "lifecycle_stage": "Lifecycle stage",
    "owner": "Owner (username)",
    "country": "Country",
    "job_title": "Job title",
    "company": "Company name",
    "tag": "Tag",
    "deal_stage": "Stage of an open deal",
}
CUSTOM_FIELD_TYPES = {
    CustomField.Type.TEXT: ["string"],
    CustomField.Type.NUMBER: ["integer"],
    CustomField.Type.DECIMAL: ["number"],
    CustomField.Type.DATE: ["string"],
    CustomField.Type.YES_NO: ["boolean"],
    CustomField.Type.CHOICE: ["string"],
    CustomField.Type.MULTI_CHOICE: ["array"],
}


def crm_describe() -> dict:
    fields = [
        field_entry(
            key,
            label,
            ["string"],
            Contact.LifecycleStage.values if key == "lifecycle_stage" else (),
        )
        for key, label in CRM_FIELD_LABELS.items()
    ]
    for custom in definitions(Contact):
        entry = field_entry(
            CUSTOM + custom.key,
            custom.label,
            CUSTOM_FIELD_TYPES.get(custom.type, ()),
            custom.choices,
        )
        if custom.type == "date":
            entry["format"] = "date"
        fields.append(entry)
    return {"label": "CRM contact", "shape": "field", "fields": fields}


register_leaf(
    "crm",
    Leaf(COMPARISON_KEYS, crm_validate, crm_compile, "a CRM contact field", crm_describe),
)
assert set(CRM_FIELD_LABELS) == set(CRM_FIELDS)
assert set(CUSTOM_FIELD_TYPES) == set(CustomField.Type)


ACCOUNT_FIELDS = ("name", "industry", "size", "country", "group_id")
ACCOUNT_OPERATORS = ("eq", "neq", "in", "not_in", "contains", "starts_with", "exists")
ACCOUNT_NUMBERS = ("people", "active_people_30d", "revenue")
NUMBER_OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte")


def account_lookup(name: str) -> str:
    if name.startswith("trait."):
        return "company__group_traits__" + name.removeprefix("trait.")
    return f"company__{name}"


def account_validate(node: dict, path: str, ctx: Context) -> None:
    name = node["account"]
    if name in ACCOUNT_NUMBERS:
        comparison_check(node, path, ctx, operators=NUMBER_OPERATORS)
        value = node.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            ctx.error(join(path, "value"), f"{name} compares with a number")
        return
    key = name.removeprefix("trait.") if isinstance(name, str) else ""
    if not isinstance(name, str) or (
        name not in ACCOUNT_FIELDS
        and not (name.startswith("trait.") and key and "__" not in key and "." not in key)
    ):
        ctx.error(
            path,
            f"unknown account field {name!r}; expected one of: "
            f"{', '.join(ACCOUNT_FIELDS + ACCOUNT_NUMBERS)}, or trait.<key> (a group trait, "
            "e.g. trait.plan)",
        )
        return
    comparison_check(node, path, ctx, operators=ACCOUNT_OPERATORS)
    op = node.get("op", "eq" if "value" in node else "exists")
    value = node.get("value")
    values = value if isinstance(value, list) else [value]
    if op in ("contains", "starts_with") and not isinstance(value, str):
        ctx.error(join(path, "value"), f"{op} compares with a string")
    elif (
        op != "exists"
        and not name.startswith("trait.")
        and any(not isinstance(v, str) for v in values)
    ):
        ctx.error(join(path, "value"), "account fields compare with strings")


def account_compile(node: dict, ctx: Context) -> Q:
    name, value = node["account"], node.get("value")
    op = node.get("op", "eq" if "value" in node else "exists")
    accounts = AccountMember.objects.filter(profile=OuterRef("pk"))
    if name in ACCOUNT_NUMBERS:
        figure = f"account_{name}"
        condition = Q(**{figure: value}) if op in ("eq", "neq") else Q(**{f"{figure}__{op}": value})
        matching = with_account_figures(Company.objects.all(), ctx.now).filter(
            ~condition if op == "neq" else condition
        )
        return Q(Exists(accounts.filter(company__in=matching.values("pk"))))
    condition = field_condition(account_lookup(name), op, value)
    return Q(Exists(accounts.filter(condition)))


def account_describe() -> dict:
    fields = [field_entry(name, name.replace("_", " "), ["string"]) for name in ACCOUNT_FIELDS]
    fields += [field_entry(name, name.replace("_", " "), ["number"]) for name in ACCOUNT_NUMBERS]
    return {"label": "Account", "shape": "field", "fields": fields, "free": True}


register_leaf(
    "account",
    Leaf(
        COMPARISON_KEYS,
        account_validate,
        account_compile,
        "a field of one of the person's accounts",
        account_describe,
    ),
)
