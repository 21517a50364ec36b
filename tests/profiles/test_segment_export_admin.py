"""A segment's members exported from its admin page: counts per purpose first (how many are
left out for missing consent), then a CSV with the chosen columns, recorded in the audit trail."""

from __future__ import annotations

import pytest
from django.utils import timezone

from cdphub.models import AuditEntry
from profiles.models import Identity, ObservedField
from profiles.segments.membership import segment_refresh
from tests.factories import (
    IdentityFactory,
    ProfileFactory,
    PurposeFactory,
    SegmentFactory,
    consent_state_create,
)

pytestmark = pytest.mark.django_db

DUTCH = {"trait": "country", "op": "eq", "value": "NL"}


@pytest.fixture
def segment():
    purpose = PurposeFactory(code="email_marketing", name="E-mail marketing", is_marketing=True)
    PurposeFactory(code="ads", name="Advertising")
    members = [
        ProfileFactory(
            traits={"country": "NL", "plan": plan},
            computed_traits={"order_count": count},
        )
        for plan, count in (("pro", 3), ("free", 1), ("pro", 0))
    ]
    ProfileFactory(traits={"country": "BE"})
    consent_state_create(members[0], purpose, "granted")
    consent_state_create(members[1], purpose, "granted")
    consent_state_create(members[2], purpose, "withdrawn")
    IdentityFactory(profile=members[0], kind=Identity.Kind.EMAIL, value="one@example.nl")
    now = timezone.now()
    ObservedField.objects.create(
        kind="trait", key="plan", types=["string"], first_seen_at=now, last_seen_at=now
    )
    segment = SegmentFactory(name="Dutch", rule=DUTCH)
    segment_refresh(segment=segment)
    segment.members = members
    return segment


def url(segment) -> str:
    return f"/admin/profiles/segment/{segment.pk}/export/"


def test_the_page_says_how_many_each_purpose_reaches_and_leaves_out(admin_client, segment):
    response = admin_client.get(url(segment))
    # The counts come once the page shows: a large segment takes a while to count.
    answer = admin_client.get(url(segment) + "counts/")

    assert answer.status_code == 200
    counts = {row.pop("name"): row for row in answer.json()["purposes"]}
    assert counts["E-mail marketing"] == {"members": 3, "allowed": 2, "left_out": 1}
    assert counts["Advertising"] == {"members": 3, "allowed": 0, "left_out": 3}
    choices = dict(response.context["form"].fields["fields"].choices)
    assert "trait.plan" in choices and "computed.order_count" in choices
    content = response.content.decode()
    assert "Left out for missing consent" in content
    assert 'data-purpose="E-mail marketing"' in content and url(segment) + "counts/" in content
    page = admin_client.get(f"/admin/profiles/segment/{segment.pk}/change/").content.decode()
    assert url(segment) in page  # "Export members…" on the segment's page


def test_the_csv_has_the_chosen_columns_for_consenting_members_only(admin_client, segment):
    response = admin_client.post(
        url(segment),
        {"purpose": "email_marketing", "fields": ["email", "trait.plan", "computed.order_count"]},
    )

    assert response["Content-Disposition"].endswith('.csv"')
    lines = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()
    first, second, _ = segment.members
    assert lines == [
        "profile_id,email,trait.plan,computed.order_count",
        f"{first.pk},one@example.nl,pro,3",
        f"{second.pk},,free,1",
    ]
    entry = AuditEntry.objects.get(action="segment.export")
    assert entry.object_id == str(segment.pk)
    assert entry.note.startswith("2 members for email_marketing, 1 left out")
    assert "one@example.nl" not in entry.note


def test_a_column_that_is_not_offered_is_refused(admin_client, segment):
    response = admin_client.post(url(segment), {"purpose": "ads", "fields": ["trait.__class__"]})

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not AuditEntry.objects.filter(action="segment.export").exists()


@pytest.mark.parametrize("role", ["Analyst", "Data engineer"])
def test_roles_without_personal_data_cannot_export(client, user_with_role, segment, role):
    client.force_login(user_with_role(role))

    assert client.get(url(segment)).status_code == 403
    assert client.post(url(segment), {"purpose": "ads"}).status_code == 403
    assert client.get(url(segment) + "counts/").status_code == 403


def test_the_api_takes_the_same_columns_and_refuses_unknown_ones(api_client_with_scopes, segment):
    client = api_client_with_scopes("profiles:write", "pii:read")
    export = f"/api/segments/{segment.pk}/export/"

    response = client.post(
        export,
        {"purpose": "email_marketing", "format": "csv", "fields": ["trait.plan"]},
        format="json",
    )
    refused = client.post(
        export, {"purpose": "ads", "format": "csv", "fields": ["password"]}, format="json"
    )

    lines = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()
    assert lines[0] == "profile_id,trait.plan" and len(lines) == 3
    assert refused.status_code == 400
    assert "unknown field 'password'" in refused.json()["errors"]["fields"][0]
