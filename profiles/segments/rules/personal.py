"""Conditions on personal data in a rule. Counting who matches ``email starts_with "a"``, then
``"an"``, then ``"ann"``, reads an address one character at a time: a caller who may not see
personal data may not use such conditions, in a preview, a saved rule, or through another
segment. ``exists`` stays allowed (whether a trait is set says nothing of its value)."""

from __future__ import annotations

from typing import Any

from cdphub.pii import is_pii_key, looks_personal
from profiles.segments.rules.language import join

GROUPS = ("all", "any")


def personal_conditions(rule: Any, *, seen: frozenset[int] = frozenset()) -> list[str]:
    """The paths of the conditions of ``rule`` on personal data (a personal trait or property,
    a value that is an e-mail address or a phone number, a segment whose rule has any)."""
    found: list[str] = []
    _walk(rule, "", found, seen)
    return found


def _walk(node: Any, path: str, found: list[str], seen: frozenset[int]) -> None:
    if not isinstance(node, dict):
        return
    for group in GROUPS:
        items = node.get(group)
        if isinstance(items, list):
            for index, item in enumerate(items):
                _walk(item, f"{join(path, group)}[{index}]", found, seen)
    if "not" in node:
        _walk(node["not"], join(path, "not"), found, seen)
    if "trait" in node and _compares_personal(node, node["trait"]):
        found.append(join(path, "trait"))
    for key in ("crm", "computed", "page", "event", "visitor"):
        if key in node and (_compares_personal(node, None) or _contact_custom_field(node)):
            found.append(join(path, key))
    where = node.get("where")
    if isinstance(where, list):
        for index, item in enumerate(where):
            if isinstance(item, dict) and _compares_personal(item, item.get("property")):
                found.append(f"{join(path, 'where')}[{index}]")
    segment_id = node.get("segment")
    referenced = isinstance(segment_id, int) and not isinstance(segment_id, bool)
    if referenced and segment_id not in seen and _segment_is_personal(segment_id, seen):
        found.append(join(path, "segment"))


def _compares_personal(node: dict, key_path: Any) -> bool:
    op = node.get("op", "eq" if "value" in node else "exists")
    if op == "exists":
        return False
    if isinstance(key_path, str) and any(is_pii_key(part) for part in key_path.split(".")):
        return True
    value = node.get("value")
    values = value if isinstance(value, list) else [value]
    return any(looks_personal(item) for item in values)


def _contact_custom_field(node: dict) -> bool:
    """A contact's custom field values are personal data, whatever their name."""
    op = node.get("op", "eq" if "value" in node else "exists")
    return op != "exists" and str(node.get("crm", "")).startswith("custom.")


def _segment_is_personal(segment_id: int, seen: frozenset[int]) -> bool:
    from profiles.models import Segment

    rule = Segment.objects.filter(pk=segment_id).values_list("rule", flat=True).first()
    return bool(personal_conditions(rule, seen=seen | {segment_id}))
