"""Every row that belongs to a person follows a profile merge, and goes back on undo; the hub
knows them only through the merge-followers registry, which every model pointing at a
profile is in (or declared to stay put)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import models

from consent.dsar import dsar_create
from consent.models import ConsentState, DataSubjectRequest, ProcessingRestriction
from consent.selectors import profiles_with_consent
from consent.services import consent_record, purposes_ensure_defaults
from profiles.models import Profile
from profiles.resolution import followers
from profiles.resolution.merges import profile_merge, profile_merge_undo, profiles_merge_manual
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db

PROJECT_APPS = ("cdphub", "profiles", "crm", "audiences", "consent")


@pytest.fixture
def purposes(db):
    purposes_ensure_defaults()


def models_pointing_at_profiles() -> list[type[models.Model]]:
    return [
        model
        for model in apps.get_models()
        if model._meta.app_label in PROJECT_APPS
        and any(
            field.is_relation and field.related_model is Profile
            for field in model._meta.concrete_fields
        )
    ]


@pytest.mark.parametrize("model", models_pointing_at_profiles(), ids=lambda m: m._meta.label)
def test_every_model_pointing_at_a_profile_follows_merges_or_says_why_not(model):
    assert followers.is_covered(model), (
        f"{model._meta.label} points at a profile: register it in its app's merges.py "
        "(followers.register, or register_staying with the reason)"
    )


def test_the_completeness_test_sees_the_consent_models():
    labels = {model._meta.label for model in models_pointing_at_profiles()}
    assert {"consent.ProcessingRestriction", "consent.DataSubjectRequest"} <= labels


@pytest.fixture
def restricted_and_other(purposes):
    other, restricted = ProfileFactory.create_batch(2)  # the restricted profile is the newer
    for profile in (restricted, other):
        consent_record(
            profile=profile, purpose="email_marketing", status="granted", method="web_form"
        )
    ProcessingRestriction.objects.create(profile=restricted, reason="Art. 18 request")
    return restricted, other


def test_a_processing_restriction_follows_a_merge_into_an_older_profile(restricted_and_other):
    restricted, older = restricted_and_other
    # Given the restricted person is merged into an older profile of theirs (manually)
    profiles_merge_manual(profile_ids=[restricted.pk, older.pk])
    survivor = Profile.objects.get(pk=older.pk)
    assert Profile.objects.get(pk=restricted.pk).merged_into_id == survivor.pk

    # Then the survivor is restricted: nobody can e-mail the person
    assert ProcessingRestriction.objects.filter(profile=survivor).exists()
    assert not profiles_with_consent("email_marketing").filter(pk=survivor.pk).exists()


def test_undo_gives_the_restriction_back(restricted_and_other):
    restricted, other = restricted_and_other
    merge = profile_merge(survivor_id=other.pk, merged_id=restricted.pk, reason="test")
    profile_merge_undo(merge=merge)
    assert ProcessingRestriction.objects.get().profile_id == restricted.pk
    assert profiles_with_consent("email_marketing").filter(pk=other.pk).exists()


def test_a_survivor_already_restricted_stays_restricted(restricted_and_other):
    restricted, other = restricted_and_other
    ProcessingRestriction.objects.create(profile=other, reason="own request")
    profile_merge(survivor_id=other.pk, merged_id=restricted.pk, reason="test")
    assert ProcessingRestriction.objects.filter(profile=other).count() == 1


def test_a_persons_requests_follow_the_merge(purposes):
    survivor, merged = ProfileFactory.create_batch(2)
    IdentityFactory(profile=merged, kind="email", value="lena@example.com")
    request = dsar_create(kind="access", email="lena@example.com", profile=merged)
    merge = profile_merge(survivor_id=survivor.pk, merged_id=merged.pk, reason="test")
    assert DataSubjectRequest.objects.get(pk=request.pk).profile_id == survivor.pk
    profile_merge_undo(merge=merge)
    assert DataSubjectRequest.objects.get(pk=request.pk).profile_id == merged.pk


def test_consent_states_still_merge_newest_first(purposes):
    survivor, merged = ProfileFactory.create_batch(2)
    consent_record(profile=survivor, purpose="analytics", status="granted", method="web_form")
    consent_record(profile=merged, purpose="analytics", status="withdrawn", method="web_form")
    merge = profile_merge(survivor_id=survivor.pk, merged_id=merged.pk, reason="test")
    assert ConsentState.objects.get(profile=survivor).status == "withdrawn"
    profile_merge_undo(merge=merge)
    assert ConsentState.objects.get(profile=survivor).status == "granted"
