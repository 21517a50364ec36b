"""Merge with...: find the other profile from a profile's page, compare both side by side,
merge into the older; refused roles and masked values where personal data is not shown."""

import pytest

from profiles.models import Profile, ProfileMerge
from tests.factories import EventFactory, IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair():
    older = ProfileFactory(traits={"firstName": "Anna", "lastName": "de Vries", "email": "a@x.nl"})
    IdentityFactory(profile=older, kind="email", value="a@x.nl")
    newer = ProfileFactory(
        traits={"name": "Anna de Vries", "email": "anna.devries@shop.example", "city": "Utrecht"}
    )
    IdentityFactory(profile=newer, kind="email", value="anna.devries@shop.example")
    EventFactory.create_batch(3, profile=newer, name="Order Completed")
    return older, newer


def url(profile) -> str:
    return f"/admin/profiles/profile/{profile.pk}/merge/"


def test_the_profile_page_links_to_merge_with(admin_client, pair):
    page = admin_client.get(f"/admin/profiles/profile/{pair[0].pk}/change/").content.decode()

    assert url(pair[0]) in page and "Merge with…" in page


def test_search_finds_other_profiles_but_not_this_one_nor_merged_ones(admin_client, pair):
    older, newer = pair
    gone = ProfileFactory(traits={"name": "Anna de Vries"}, merged_into=older)

    response = admin_client.get(url(newer), {"q": "de vries"})

    found = [c["pk"] for c in response.context["candidates"]]
    assert found == [older.pk] and gone.pk not in found
    assert f'href="?with={older.pk}"' in response.content.decode()


def test_a_typo_offers_the_closest_names(admin_client, pair):
    older, newer = pair

    response = admin_client.get(url(newer), {"q": "de Vriez"})

    assert response.context["candidates"] == []
    assert [c["pk"] for c in response.context["suggestions"]] == [older.pk]
    assert "Did you mean" in response.content.decode()


def test_both_profiles_are_compared_side_by_side_older_first(admin_client, pair):
    older, newer = pair

    response = admin_client.get(url(newer), {"with": older.pk})

    sides = response.context["comparison"]
    assert [side["profile"] for side in sides] == [older, newer]
    content = response.content.decode()
    assert "Kept: profile" in content and "Utrecht" in content
    assert "anna.devries@shop.example" in content and "a@x.nl" in content
    assert "Merge these two profiles" in content


def test_merging_moves_the_newer_into_the_older(admin_client, pair):
    older, newer = pair

    response = admin_client.post(url(newer), {"with": older.pk}, follow=True)

    assert response.redirect_chain[-1][0] == f"/admin/profiles/profile/{older.pk}/change/"
    newer.refresh_from_db()
    assert newer.merged_into_id == older.pk
    assert older.events.count() == 3
    merge = ProfileMerge.objects.get()
    assert (merge.survivor_id, merge.merged_id) == (older.pk, newer.pk)
    assert merge.reason == "manual merge"
    assert merge.merged_by.username == "root"
    assert "merged into profile" in " ".join(str(m) for m in response.context["messages"])


def test_a_merged_profile_opens_the_picker_of_its_survivor(admin_client, pair):
    older, newer = pair
    newer.merged_into = older
    newer.save()

    response = admin_client.get(url(newer), {"q": "anna"})

    assert response.status_code == 302
    assert response.url.startswith(url(older))


@pytest.mark.parametrize("chosen", ["self", "junk", "99999999"])
def test_choosing_no_other_profile_compares_and_merges_nothing(admin_client, pair, chosen):
    older, _ = pair
    value = {"self": older.pk, "junk": "x'1", "99999999": 99999999}[chosen]

    page = admin_client.get(url(older), {"with": value})
    posted = admin_client.post(url(older), {"with": value})

    assert page.context["comparison"] is None
    assert posted.status_code == 200
    assert not ProfileMerge.objects.exists()


def test_roles_that_may_not_change_profiles_are_refused(client, user_with_role, pair):
    client.force_login(user_with_role("Analyst"))

    assert client.get(url(pair[0])).status_code == 403
    assert client.post(url(pair[0]), {"with": pair[1].pk}).status_code == 403
    assert Profile.objects.filter(merged_into__isnull=False).count() == 0


def test_without_personal_data_the_comparison_is_masked(client, user_with_role, pair):
    older, newer = pair
    client.force_login(user_with_role("Data engineer"))

    searched = client.get(url(newer), {"q": "de vries"})
    compared = client.get(url(newer), {"with": older.pk}).content.decode()

    assert searched.context["candidates"] == [] and searched.context["suggestions"] == []
    assert "anna.devries@shop.example" not in compared and "Utrecht" not in compared
    assert "de Vries" not in compared
