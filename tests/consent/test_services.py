from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import ConsentRecord, ConsentState, ConsentText, ProcessingRestriction
from consent.selectors import profile_has_consent, profiles_with_consent
from consent.services import (
    ConsentError,
    consent_import_rows,
    consent_object,
    consent_record,
    consent_record_tcf,
    consent_withdraw,
)
from profiles.resolution.merges import profile_merge
from tests.consent.tcf_strings import tcf_core_string
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def grant(profile, purpose="email_marketing", **kwargs):
    return consent_record(
        profile=profile, purpose=purpose, status="granted", method="web_form", **kwargs
    )


def state_of(profile, purpose):
    return ConsentState.objects.get(profile=profile, purpose__code=purpose)


def test_record_appends_and_derives_state(purposes):
    profile = ProfileFactory()
    first = grant(profile)
    second = consent_withdraw(profile=profile, purpose="email_marketing", method="api")
    assert ConsentRecord.objects.filter(profile=profile).count() == 2
    state = state_of(profile, "email_marketing")
    assert (state.status, state.record_id) == ("withdrawn", second.pk)
    assert first.text_version.version == "1"


def test_an_older_record_does_not_overwrite_the_current_state(purposes):
    profile = ProfileFactory()
    current = grant(profile)
    consent_record(
        profile=profile,
        purpose="email_marketing",
        status="denied",
        method="import",
        occurred_at=timezone.now() - timedelta(days=30),
    )
    state = state_of(profile, "email_marketing")
    assert (state.status, state.record_id) == ("granted", current.pk)
    assert ConsentRecord.objects.filter(profile=profile).count() == 2  # history still kept


def test_future_dated_record_is_refused(purposes):
    with pytest.raises(ConsentError, match="future") as error:
        grant(ProfileFactory(), occurred_at=timezone.now() + timedelta(days=1))
    assert error.value.field == "occurred_at"


def test_the_named_text_version_is_the_proof(purposes):
    v2 = ConsentText.objects.create(
        purpose=purposes["email_marketing"], version="2", text="Updated newsletter text."
    )
    record = grant(ProfileFactory(), text_version="1")
    assert record.text_version.version == "1"
    assert grant(ProfileFactory()).text_version == v2  # default: the current text


def test_sms_needs_the_specific_phone_number(purposes):
    with pytest.raises(ConsentError, match="specific phone number") as error:
        grant(ProfileFactory(), purpose="sms_marketing")
    assert error.value.field == "identifier_value"
    with pytest.raises(ConsentError, match="specific phone number"):
        grant(
            ProfileFactory(),
            purpose="sms_marketing",
            identifier_kind="email",
            identifier_value="a@example.com",
        )


def test_sms_needs_an_express_written_method(purposes):
    with pytest.raises(ConsentError, match="express written") as error:
        consent_record(
            profile=ProfileFactory(),
            purpose="sms_marketing",
            status="granted",
            method="call",
            identifier_kind="phone",
            identifier_value="+31612345678",
        )
    assert error.value.field == "method"


def test_sms_grant_stores_the_number_in_e164(purposes):
    record = grant(
        ProfileFactory(),
        purpose="sms_marketing",
        identifier_kind="phone",
        identifier_value="06 1234 5678",
    )
    assert record.identifier_value == "+31612345678"


def test_sms_withdrawal_needs_no_number_and_works_at_once(purposes):
    profile = ProfileFactory()
    grant(
        profile, purpose="sms_marketing", identifier_kind="phone", identifier_value="+31612345678"
    )
    assert profile_has_consent(profile, "sms_marketing")
    consent_withdraw(profile=profile, purpose="sms_marketing", method="sms_keyword", source="STOP")
    assert not profile_has_consent(profile, "sms_marketing")


def test_bad_identifier_is_refused(purposes):
    with pytest.raises(ConsentError, match="not a valid") as error:
        grant(ProfileFactory(), identifier_kind="email", identifier_value="not-an-email")
    assert error.value.field == "identifier_value"


def test_unknown_purpose_lists_the_known_ones(purposes):
    with pytest.raises(ConsentError, match="email_marketing"):
        grant(ProfileFactory(), purpose="newsletter")


def test_inactive_purpose_cannot_be_granted_but_can_be_withdrawn(purposes):
    profile = ProfileFactory()
    grant(profile, purpose="phone")
    purposes["phone"].is_active = False
    purposes["phone"].save()
    with pytest.raises(ConsentError, match="no longer active"):
        grant(profile, purpose="phone")
    consent_withdraw(profile=profile, purpose="phone", method="api")
    assert state_of(profile, "phone").status == "withdrawn"


def test_record_for_a_merged_profile_goes_to_the_survivor(purposes):
    survivor = ProfileFactory()
    merged = ProfileFactory(merged_into=survivor)
    record = grant(merged)
    assert record.profile == survivor
    assert profile_has_consent(merged, "email_marketing")


def test_objection_withdraws_all_marketing_purposes_only(purposes):
    profile = ProfileFactory()
    for code in ("email_marketing", "advertising", "analytics", "personalisation"):
        grant(profile, purpose=code)
    records = consent_object(profile=profile, method="api")
    assert {r.purpose.code for r in records} == {
        "email_marketing",
        "sms_marketing",
        "phone",
        "advertising",
        "third_party_sharing",
    }
    assert not profile_has_consent(profile, "email_marketing")
    assert not profile_has_consent(profile, "advertising")
    assert profile_has_consent(profile, "analytics")


def test_profiles_with_consent_is_granted_now_and_not_merged(purposes):
    granted, withdrawn, denied, never = ProfileFactory.create_batch(4)
    grant(granted)
    grant(withdrawn)
    consent_withdraw(profile=withdrawn, purpose="email_marketing", method="api")
    consent_record(profile=denied, purpose="email_marketing", status="denied", method="cmp")
    grant(never, purpose="analytics")
    assert list(profiles_with_consent("email_marketing")) == [granted]
    # A profile merged away after its grant is not handed out; its survivor carries the consent.
    survivor = ProfileFactory()
    granted.merged_into = survivor
    granted.save()
    assert list(profiles_with_consent("email_marketing")) == []


def test_among_some_ids_the_answer_is_the_same_rule(purposes):
    """The form for a batch of ids (looked up by those ids) answers as the whole selector."""
    granted, withdrawn, never, restricted, merged, outside = ProfileFactory.create_batch(6)
    for profile in (granted, withdrawn, restricted, merged, outside):
        grant(profile)
    consent_withdraw(profile=withdrawn, purpose="email_marketing", method="api")
    ProcessingRestriction.objects.create(profile=restricted, reason="contested accuracy")
    merged.merged_into = never
    merged.save()
    among = [granted.pk, withdrawn.pk, never.pk, restricted.pk, merged.pk]

    everyone = set(profiles_with_consent("email_marketing").values_list("pk", flat=True))
    assert everyone == {granted.pk, outside.pk}
    some = profiles_with_consent("email_marketing", among=among).values_list("pk", flat=True)
    assert set(some) == everyone & set(among) == {granted.pk}


def test_profile_merge_moves_consent_and_newest_fact_wins(purposes):
    survivor, merged = ProfileFactory.create_batch(2)
    grant(survivor, occurred_at=timezone.now() - timedelta(days=2))
    consent_withdraw(profile=merged, purpose="email_marketing", method="api")
    grant(merged, purpose="analytics")
    merge = profile_merge(survivor_id=survivor.pk, merged_id=merged.pk, reason="test")
    assert len(merge.moved["consent_records"]) == 2
    assert state_of(survivor, "email_marketing").status == "withdrawn"
    assert state_of(survivor, "analytics").status == "granted"


def test_tcf_string_maps_to_our_purposes(purposes):
    profile = ProfileFactory()
    tcf = tcf_core_string({1, 2, 3, 4, 7, 8, 9}, vendor_list_version=188)
    records = consent_record_tcf(profile=profile, tcf_string=tcf, ip_address="192.0.2.4")
    assert {r.purpose.code: r.status for r in records} == {
        "advertising": "granted",
        "analytics": "granted",
        "personalisation": "denied",
    }
    assert {r.tcf_vendor_list_version for r in records} == {188}
    assert all(r.method == "cmp" and r.tcf_string == tcf for r in records)


def test_tcf_without_purpose_one_grants_nothing(purposes):
    records = consent_record_tcf(
        profile=ProfileFactory(), tcf_string=tcf_core_string(set(range(2, 12)))
    )
    assert {r.status for r in records} == {"denied"}


def test_tcf_bad_string_is_refused_on_its_field(purposes):
    with pytest.raises(ConsentError) as error:
        consent_record_tcf(profile=ProfileFactory(), tcf_string="garbage!")
    assert error.value.field == "tcf_string"
    assert not ConsentRecord.objects.exists()


def test_import_rows_validates_each_row_and_keeps_the_good_ones(purposes):
    anna = IdentityFactory(kind="email", value="anna@example.com").profile
    IdentityFactory(kind="phone", value="+31612345678", profile=anna)
    rows = [
        {
            "email": "Anna@Example.com ",
            "purpose": "email_marketing",
            "status": "granted",
            "occurred_at": "2026-03-01T09:30:00+01:00",
            "ip_address": "192.0.2.1",
            "form_url": "https://shop.example.com/signup",
            "text_version": "1",
        },
        {
            "phone": "+31612345678",
            "purpose": "sms_marketing",
            "status": "granted",
            "occurred_at": "2026-03-01T09:30:00",
            "method": "web_form",
        },
        {"email": "anna@example.com", "purpose": "email_marketing", "status": "granted"},
        {"email": "x", "purpose": "email_marketing", "status": "granted", "occurred_at": "2026"},
        {"purpose": "email_marketing", "status": "granted", "occurred_at": "2026-03-01"},
        {
            "email": "anna@example.com",
            "purpose": "analytics",
            "status": "ok",
            "occurred_at": "2026-03-01T10:00:00Z",
        },
        {
            "email": "anna@example.com",
            "purpose": "analytics",
            "status": "granted",
            "occurred_at": "yesterday",
        },
    ]
    result = consent_import_rows(rows=rows, source="spring import")
    assert len(result.created) == 2
    assert [(row, column) for row, column, _ in result.errors] == [
        (4, "occurred_at"),
        (5, "email"),
        (6, "email"),
        (7, "status"),
        (8, "occurred_at"),
    ]
    email_record, sms_record = result.created
    assert email_record.identifier_value == "anna@example.com"
    assert email_record.method == "import" and email_record.source == "spring import"
    assert sms_record.identifier_kind == "phone"
    assert profile_has_consent(anna, "sms_marketing")


def test_consent_updated_event_records_each_purpose(purposes):
    from consent.services import consent_record_event

    profile = ProfileFactory()
    grant(profile, purpose="analytics")
    records = consent_record_event(
        profile=profile,
        name="Consent Updated",
        properties={"purposes": {"email_marketing": True, "analytics": False, "phone": False}},
        context={"ip": "192.0.2.8", "userAgent": "Mozilla/5.0", "page": {"url": "https://x.nl/p"}},
        source="website",
    )
    assert {r.purpose.code: r.status for r in records} == {
        "email_marketing": "granted",
        "analytics": "withdrawn",  # was granted
        "phone": "denied",  # never was
    }
    assert {r.method for r in records} == {"event"}
    assert records[0].ip_address == "192.0.2.8" and records[0].form_url == "https://x.nl/p"


def test_event_with_tcf_string_in_context(purposes):
    from consent.services import consent_record_event

    records = consent_record_event(
        profile=ProfileFactory(),
        name="Page Viewed",
        properties={},
        context={"consent": {"tcfString": tcf_core_string({1, 8, 9})}},
    )
    assert {r.purpose.code: r.status for r in records}["analytics"] == "granted"


def test_ordinary_event_records_nothing_and_bad_consent_event_is_refused(purposes):
    from consent.services import consent_record_event

    profile = ProfileFactory()
    assert (
        consent_record_event(profile=profile, name="Order Completed", properties={}, context={})
        == []
    )
    with pytest.raises(ConsentError, match="needs 'purpose'"):
        consent_record_event(profile=profile, name="Consent Updated", properties={}, context={})
    with pytest.raises(ConsentError, match="specific phone number"):
        consent_record_event(
            profile=profile,
            name="Consent Updated",
            properties={"purpose": "sms_marketing", "status": "granted"},
            context={},
        )
    assert not ConsentRecord.objects.exists()


def test_sms_consent_from_a_web_form_event_names_the_number(purposes):
    from consent.services import consent_record_event

    profile = ProfileFactory()
    (record,) = consent_record_event(
        profile=profile,
        name="Consent Updated",
        properties={"purpose": "sms_marketing", "status": "granted", "phone": "0612345678"},
        context={"page": {"url": "https://shop.example.com/sms"}},
    )
    assert (record.identifier_kind, record.identifier_value) == ("phone", "+31612345678")
    assert record.method == "web_form"
    assert profile_has_consent(profile, "sms_marketing")


def test_suppressed_identifiers_checks_a_batch(purposes):
    from consent.hashing import suppression_hash
    from consent.models import Suppression
    from consent.selectors import is_suppressed, suppressed_identifiers

    Suppression.objects.create(
        identifier_kind="email", value_hash=suppression_hash("email", "gone@example.org")
    )
    batch = [("email", "Gone@Example.org"), ("email", "here@example.org"), ("phone", "")]
    assert suppressed_identifiers(batch) == {("email", "Gone@Example.org")}
    assert is_suppressed("email", "gone@example.org")
    assert not is_suppressed("user_id", "gone@example.org")  # the kind is part of the hash
