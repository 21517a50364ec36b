import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from cdphub.hashing import secret_hash
from cdphub.paginators import EstimatedCountPaginator
from profiles.models import Profile, Source
from tests.factories import EventFactory, IdentityFactory, ProfileFactory, SourceFactory

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "/admin/profiles/source/",
    "/admin/profiles/profile/",
    "/admin/profiles/identity/",
    "/admin/profiles/event/",
    "/admin/profiles/profilemerge/",
    "/admin/profiles/segment/",
]


@pytest.fixture
def many_rows():
    source = SourceFactory()
    for _ in range(30):
        profile = ProfileFactory()
        IdentityFactory(profile=profile, source=source)
        EventFactory(profile=profile, source=source)


@pytest.mark.parametrize("url", CHANGELISTS)
def test_changelists_render_in_a_bounded_number_of_queries(
    admin_client, many_rows, url, django_assert_max_num_queries
):
    with django_assert_max_num_queries(12):
        response = admin_client.get(url)
    assert response.status_code == 200


def test_profile_change_page_renders_identities_and_events(
    admin_client, django_assert_max_num_queries
):
    profile = ProfileFactory(traits={"email": "anna@example.com"})
    IdentityFactory(profile=profile, value="anna@example.com")
    EventFactory.create_batch(25, profile=profile, name="Order Completed")

    with django_assert_max_num_queries(20):
        page = admin_client.get(f"/admin/profiles/profile/{profile.pk}/change/")

    content = page.content.decode()
    assert "anna@example.com" in content
    assert content.count("Order Completed") == 20  # latest 20 events


@pytest.mark.parametrize("term", ["ANNA@example.com ", "+31 6 12345678", "0612345678"])
def test_profile_search_finds_by_normalised_identifier(admin_client, term):
    wanted = ProfileFactory()
    IdentityFactory(profile=wanted, kind="email", value="anna@example.com")
    IdentityFactory(profile=wanted, kind="phone", value="+31612345678")
    ProfileFactory(traits={"email": "bram@example.com"})

    response = admin_client.get("/admin/profiles/profile/", {"q": term})

    assert list(response.context["cl"].result_list) == [wanted]


def test_paginator_counts_exactly_below_the_threshold(settings):
    settings.CDPHUB_ESTIMATED_COUNT_THRESHOLD = 100
    ProfileFactory.create_batch(7)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE profiles_profile")

    assert EstimatedCountPaginator(Profile.objects.all(), 5).count == 7


def test_paginator_estimates_past_the_threshold_without_full_count(settings):
    settings.CDPHUB_ESTIMATED_COUNT_THRESHOLD = 10
    ProfileFactory.create_batch(40)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE profiles_profile")

    paginator = EstimatedCountPaginator(Profile.objects.all(), 5)

    assert paginator.count >= 11  # at least what the bounded count saw, then the estimate
    assert 20 <= paginator.count <= 80


def test_source_added_in_admin_shows_its_write_key_once(admin_client):
    response = admin_client.post(
        "/admin/profiles/source/add/",
        {"name": "Web shop", "kind": "shop", "is_active": "on"},
        follow=True,
    )

    source = Source.objects.get(name="Web shop")
    message = next(str(m) for m in response.context["messages"] if "Write key" in str(m))
    key = message.split(": ")[1].split(" ")[0]
    assert secret_hash(key) == source.write_key_hash
    assert key.startswith(source.write_key_prefix)


def test_create_source_command_prints_the_write_key(capsys):
    call_command("create_source", "--name", "POS")

    key = capsys.readouterr().out.splitlines()[1]
    assert Source.objects.get(name="POS").write_key_hash == secret_hash(key)


def test_profile_page_offers_the_actions_its_user_may_take(client, user_with_role):
    profile = ProfileFactory()
    page_for = {}
    for role in ("Privacy officer", "Analyst"):
        client.force_login(user_with_role(role))
        page_for[role] = client.get(
            f"/admin/profiles/profile/{profile.pk}/change/"
        ).content.decode()

    erase = f"/admin/consent/datasubjectrequest/add/?kind=erasure&amp;profile={profile.pk}"
    assert erase in page_for["Privacy officer"]
    assert erase not in page_for["Analyst"]
    assert "Merge with…" in page_for["Privacy officer"]
    assert "Merge with…" not in page_for["Analyst"]
    history = f"/admin/consent/consentrecord/?profile__id__exact={profile.pk}"
    assert history in page_for["Analyst"]
    assert client.get(history).status_code == 200  # the filter is accepted, not refused


def test_erase_action_opens_a_prefilled_request(client, user_with_role):
    profile = ProfileFactory()
    client.force_login(user_with_role("Privacy officer"))

    form = (
        client.get(f"/admin/consent/datasubjectrequest/add/?kind=erasure&profile={profile.pk}")
        .context["adminform"]
        .form
    )

    assert form.initial["kind"] == "erasure"
    assert str(form.initial["profile"]) == str(profile.pk)


def test_given_traits_read_as_a_table_and_are_edited_as_an_explicit_audited_action(
    client, user_with_role
):
    from cdphub.models import AuditEntry

    profile = ProfileFactory(
        traits={"email": "anna@example.com", "address": {"city": "Utrecht"}, "tags": ["a", "b"]}
    )
    client.force_login(user_with_role("Marketer"))
    page = client.get(reverse("admin:profiles_profile_change", args=[profile.pk])).content.decode()
    assert '<th scope="row">city</th><td>Utrecht</td>' in page  # nested, readable
    assert "<li>a</li><li>b</li>" in page
    assert 'name="traits"' not in page  # no JSON box on the page
    edit = reverse("admin:profiles_profile_traits", args=[profile.pk])
    assert edit in page

    refused = client.post(edit, {"traits": '{"email": "not an address"}'})
    assert refused.status_code == 200 and "not a valid" in refused.content.decode()
    response = client.post(edit, {"traits": '{"email": "Anna@Example.com", "plan": "pro"}'})
    assert response.status_code == 302
    profile.refresh_from_db()
    assert profile.traits == {"email": "anna@example.com", "plan": "pro"}
    entry = AuditEntry.objects.get(action="profile.traits_edit")
    assert entry.note == "changed 3 trait(s): address, plan, tags"  # keys, never values


def test_editing_traits_needs_the_change_and_personal_data_permissions(client, user_with_role):
    profile = ProfileFactory(traits={"email": "anna@example.com"})
    edit = reverse("admin:profiles_profile_traits", args=[profile.pk])
    for role in ("Analyst", "Data engineer"):  # no change / no personal data
        client.force_login(user_with_role(role))
        assert client.post(edit, {"traits": '{"email": "x@example.com"}'}).status_code == 403
    profile.refresh_from_db()
    assert profile.traits == {"email": "anna@example.com"}
