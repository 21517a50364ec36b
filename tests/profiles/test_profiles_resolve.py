"""The one resolver every path other than event processing uses to find or create profiles."""

from __future__ import annotations

import pytest

from profiles.models import Identity, Profile
from profiles.resolution.resolver import profiles_resolve
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def test_unknown_identifiers_get_a_new_profile_each_person():
    resolved = profiles_resolve(
        [[("email", "a@example.org")], [("email", "b@example.org"), ("phone", "+31612345678")]],
        new_traits=[{"firstName": "A"}, {"firstName": "B"}],
    )
    a, b = (Profile.objects.get(pk=pk) for pk in resolved.profile_ids)
    assert (a.traits, b.traits) == ({"firstName": "A"}, {"firstName": "B"})
    assert sorted(resolved.created_profiles) == sorted([a.pk, b.pk])
    assert set(b.identities.values_list("kind", "value")) == {
        ("email", "b@example.org"),
        ("phone", "+31612345678"),
    }
    assert len(resolved.created_identities) == 3


def test_two_groups_sharing_a_new_identifier_are_one_profile():
    resolved = profiles_resolve(
        [
            [("crm_contact", "1"), ("email", "a@example.org")],
            [("crm_contact", "2"), ("email", "a@example.org")],
        ],
        new_traits=[{}, {}],
    )
    assert resolved.profile_ids[0] == resolved.profile_ids[1]
    assert Profile.objects.count() == 1
    assert Identity.objects.count() == 3


def test_the_strongest_owned_identifier_decides_and_nothing_is_merged():
    by_email, by_phone = ProfileFactory(), ProfileFactory()
    IdentityFactory(profile=by_email, kind="email", value="a@example.org")
    IdentityFactory(profile=by_phone, kind="phone", value="+31612345678")
    resolved = profiles_resolve(
        [[("email", "a@example.org"), ("phone", "+31612345678"), ("crm_contact", "7")]],
        new_traits=[{}],
    )
    assert resolved.profile_ids == [by_email.pk]
    assert resolved.created_profiles == []
    # the phone stays with its owner; the new identifier joins the chosen profile
    assert Identity.objects.get(kind="phone").profile == by_phone
    assert Identity.objects.get(kind="crm_contact").profile == by_email
    assert not Profile.objects.filter(merged_into__isnull=False).exists()


def test_a_linked_profile_is_kept_when_no_identifier_is_owned():
    linked, merged_away = ProfileFactory(), ProfileFactory()
    merged_away.merged_into = linked
    merged_away.save()
    resolved = profiles_resolve(
        [[("email", "a@example.org")], [("email", "b@example.org")]],
        new_traits=[{}, {}],
        linked=[linked.pk, merged_away.pk],
    )
    assert resolved.profile_ids[0] == linked.pk
    # a merged profile is no link to keep: the person gets a new one
    assert resolved.profile_ids[1] not in (linked.pk, merged_away.pk)
