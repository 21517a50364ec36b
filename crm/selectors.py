from __future__ import annotations

from django.db.models import Count, DecimalField, ExpressionWrapper, F, QuerySet, Sum

from crm.models import Contact, Deal


def deals_stage_totals(deals: QuerySet[Deal]) -> list[dict]:
    """Per pipeline stage and currency: number of deals, total amount and the
    probability-weighted amount (what the stage is expected to bring in)."""
    weighted = ExpressionWrapper(
        F("amount") * F("probability") / 100,
        output_field=DecimalField(max_digits=16, decimal_places=2),
    )
    return list(
        deals.order_by()
        .values("stage_id", "stage__name", "stage__order", "stage__pipeline__name", "currency")
        .annotate(count=Count("id"), total=Sum("amount"), weighted=Sum(weighted))
        .order_by("stage__pipeline__name", "stage__order", "currency")
    )


def contacts_for_profile(profile) -> QuerySet[Contact]:
    """The CRM contacts linked to a CDP profile (for the profile page)."""
    return (
        Contact.objects.filter(profile=profile)
        .select_related("company", "owner")
        .order_by("-updated_at")
    )


def contacts_for_mailing(purpose_code: str) -> QuerySet[Contact]:
    """Contacts a campaign for ``purpose_code`` may reach now: an e-mail address, and a linked
    profile the consent selector allows. The only source of CRM mailing lists."""
    from consent.selectors import profiles_with_consent

    allowed = profiles_with_consent(purpose_code).values("pk")
    return Contact.objects.exclude(email="").filter(profile_id__in=allowed).order_by("pk")
