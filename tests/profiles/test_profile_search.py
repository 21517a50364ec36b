"""Profiles found by name and part of an e-mail through the trigram index, with "did you mean"
when nobody matches; personal look-ups only for roles that may see personal data."""

import pytest
from django.db import connection

from profiles.models import Profile
from profiles.selectors import profiles_named, profiles_similar
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db

URL = "/admin/profiles/profile/"


@pytest.fixture
def anna():
    profile = ProfileFactory(
        traits={"firstName": "Anna", "lastName": "de Vries", "email": "anna.devries@example.com"}
    )
    IdentityFactory(profile=profile, kind="user_id", value="u-1001")
    return profile


@pytest.fixture
def others():
    return [
        ProfileFactory(traits={"name": "Bram Jansen", "email": "bram@shop.example"}),
        ProfileFactory(traits={"firstName": "Annabel", "email": "annabel@example.org"}),
        ProfileFactory(traits={"country": "NL"}),
    ]


def found(admin_client, term) -> list[Profile]:
    response = admin_client.get(URL, {"q": term})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.mark.parametrize("term", ["Anna de Vries", "de vries", "  DE   VRIES ", "devries@exa"])
def test_a_profile_is_found_by_its_name_or_part_of_its_email(admin_client, anna, others, term):
    assert found(admin_client, term) == [anna]


def test_a_part_of_a_name_finds_everyone_who_has_it(admin_client, anna, others):
    assert set(found(admin_client, "anna")) == {anna, others[1]}


def test_identifiers_and_ids_are_still_found_exactly(admin_client, anna, others):
    assert found(admin_client, "u-1001") == [anna]
    assert found(admin_client, str(anna.pk)) == [anna]


def test_an_address_typed_whole_finds_its_owner_not_every_address_containing_it(admin_client):
    anna = ProfileFactory(traits={"email": "anna@example.com"})
    IdentityFactory(profile=anna, kind="email", value="anna@example.com")
    ProfileFactory(traits={"email": "joanna@example.com"})

    assert found(admin_client, "anna@example.com") == [anna]
    assert len(found(admin_client, "anna@example")) == 2  # a part: both


def test_short_terms_and_wildcards_match_no_one_by_accident(admin_client, anna, others):
    assert found(admin_client, "an") == []  # below three letters: identifiers only
    assert found(admin_client, "%%%") == []
    assert found(admin_client, "___") == []


def test_roles_without_personal_data_do_not_find_people_by_name(client, user_with_role, anna):
    client.force_login(user_with_role("Analyst"))

    response = client.get(URL, {"q": "de vries"})

    assert list(response.context["cl"].result_list) == []
    assert response.context["did_you_mean"] == []  # no names shown either
    assert "u-1001" in client.get(URL, {"q": "u-1001"}).context["cl"].query


def test_nobody_found_offers_the_closest_names(admin_client, anna, others):
    response = admin_client.get(URL, {"q": "Jansn"})

    assert list(response.context["cl"].result_list) == []
    assert response.context["did_you_mean"] == [(others[0].pk, "Bram Jansen")]
    content = response.content.decode()
    assert "No profile matches" in content and "Did you mean" in content
    assert f"/admin/profiles/profile/{others[0].pk}/change/" in content


def test_did_you_mean_leaves_out_merged_profiles(anna, others):
    merged = ProfileFactory(traits={"name": "Bram Jansen"}, merged_into=others[0])

    assert list(profiles_similar("Jansn")) == [others[0]]
    assert merged not in profiles_similar("Bram Jansen")
    assert list(profiles_similar("zzzzqqq")) == []
    assert list(profiles_similar("ja")) == []


def test_search_and_suggestions_use_the_trigram_index(anna):
    """The query must spell the indexed expression exactly, or PostgreSQL scans every profile.
    With plain scans made prohibitive, the only other way is the trigram index."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        partial = profiles_named("vries").explain()
        by_local_part = profiles_named("anna.devries@exa").explain()
        fuzzy = profiles_similar("vrie").explain()
        assert list(profiles_similar("vrie")) == [anna]

    assert "profile_search_trgm" in partial
    assert "profile_search_trgm" in by_local_part
    assert "profile_search_trgm" in fuzzy


def test_a_part_of_an_address_is_found_by_its_local_part_and_checked_whole(admin_client):
    """The local part picks the rows through the index; the whole term must still be in them."""
    ProfileFactory(traits={"email": "anna@example.com"})
    ProfileFactory(traits={"email": "joanna@example.com"})
    ProfileFactory(traits={"email": "anna@other.org"})
    ProfileFactory(traits={"name": "Anna Example", "email": "ae@x.org"})

    assert sorted(p.traits["email"] for p in found(admin_client, "anna@exa")) == [
        "anna@example.com",
        "joanna@example.com",
    ]
    assert [p.traits["email"] for p in found(admin_client, "@other.org")] == ["anna@other.org"]
    assert [p.traits["email"] for p in found(admin_client, "na@oth")] == ["anna@other.org"]
