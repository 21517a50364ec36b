"""Consent's leaf in the segment rule language: ``{"consent": "<purpose code>"}``, the person's
consent for the purpose is granted now. (Activation still goes through
``consent.selectors.profiles_with_consent``, which also leaves out restricted profiles.)"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q

from consent.models import ConsentState, ConsentStatus, Purpose
from profiles.segments.rules.language import Context, Leaf, type_name
from profiles.segments.rules.profile_target import register_leaf


def consent_validate(node: dict, path: str, ctx: Context) -> None:
    code = node["consent"]
    if not isinstance(code, str) or not code:
        ctx.error(path, f"expected a purpose code, got {type_name(code)}")
    elif not Purpose.objects.filter(code=code).exists():
        ctx.error(path, f"unknown purpose {code!r}")


def consent_compile(node: dict, ctx: Context) -> Q:
    granted = ConsentState.objects.filter(
        profile=OuterRef("pk"), purpose__code=node["consent"], status=ConsentStatus.GRANTED
    )
    return Q(Exists(granted))


def consent_describe() -> dict:
    purposes = Purpose.objects.filter(is_active=True).order_by("name").values_list("code", "name")
    return {
        "label": "Consent granted for",
        "shape": "choice",
        "choices": [list(p) for p in purposes],
    }


register_leaf(
    "consent",
    Leaf(frozenset(), consent_validate, consent_compile, "purpose granted now", consent_describe),
)
