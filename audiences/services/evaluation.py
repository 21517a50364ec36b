"""Rule audiences: the rule, compiled to one query over visitors, becomes the members."""

from __future__ import annotations

from django.db import transaction

from audiences.models import Audience
from audiences.rules import VISITORS
from profiles.segments.rules import RuleError, rule_errors, rule_queryset

SAMPLE_SIZE = 10


def audience_rule_errors(rule) -> list[str]:
    """The rule's problems as ``"path: message"`` lines (empty when it is valid)."""
    return rule_errors(rule, target=VISITORS)


def audience_preview(*, rule) -> dict:
    """Size estimate while editing: how many visitors match now, and a sample (no PII)."""
    visitors = rule_queryset(rule, target=VISITORS)
    sample = visitors.order_by("-last_seen_at").values(
        "id", "key_kind", "key", "country", "device_type", "last_seen_at"
    )[:SAMPLE_SIZE]
    return {"count": visitors.count(), "sample": list(sample)}


@transaction.atomic
def audience_refresh(*, audience: Audience) -> int:
    """Replace a rule audience's members with the visitors its rule selects now."""
    from audiences.services.visitors import audience_members_set

    if audience.kind != Audience.Kind.RULE:
        raise RuleError([{"path": "", "message": "only rule audiences are built from a rule"}])
    visitor_ids = rule_queryset(audience.rule, target=VISITORS).values_list("pk", flat=True)
    return audience_members_set(audience=audience, visitor_ids=visitor_ids)
