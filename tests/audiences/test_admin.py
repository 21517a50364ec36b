import pytest
from django.urls import reverse

from audiences.models import Audience
from tests.factories import (
    AudienceFactory,
    CategoryFactory,
    DataProviderFactory,
    VisitorFactory,
    VisitorTraitHitFactory,
)

pytestmark = pytest.mark.django_db

MODELS = ["visitor", "dataprovider", "category", "visitortraithit", "audience"]


@pytest.fixture
def many_rows(superuser):
    parent = CategoryFactory(code="INT")
    providers = [DataProviderFactory() for _ in range(3)]
    for number in range(30):
        category = CategoryFactory(code=f"INT-{number}", parent=parent, tier=2)
        visitor = VisitorFactory()
        VisitorTraitHitFactory(visitor=visitor, category=category, provider=providers[number % 3])
        AudienceFactory(created_by=superuser)


@pytest.mark.parametrize("model", MODELS)
def test_changelists_run_a_bounded_number_of_queries(
    model, admin_client, many_rows, django_assert_max_num_queries
):
    url = reverse(f"admin:audiences_{model}_changelist")
    with django_assert_max_num_queries(12):
        response = admin_client.get(url)
    assert response.status_code == 200


@pytest.mark.parametrize("model", MODELS)
def test_changelists_search(model, admin_client, many_rows):
    response = admin_client.get(reverse(f"admin:audiences_{model}_changelist"), {"q": "INT-3"})
    assert response.status_code == 200


def test_visitor_page_shows_its_hits(admin_client):
    hit = VisitorTraitHitFactory(category=CategoryFactory(code="INT-HIKE"))
    response = admin_client.get(reverse("admin:audiences_visitor_change", args=[hit.visitor_id]))
    assert response.status_code == 200
    assert "INT-HIKE" in response.content.decode()


def test_analyst_reads_but_cannot_add(client, user_with_role):
    client.force_login(user_with_role("Analyst"))
    assert client.get(reverse("admin:audiences_audience_changelist")).status_code == 200
    assert client.get(reverse("admin:audiences_audience_add")).status_code == 403


def test_sales_does_not_see_audiences(client, user_with_role):
    client.force_login(user_with_role("Sales"))
    assert client.get(reverse("admin:audiences_audience_changelist")).status_code == 403


def test_lookalike_without_seed_is_a_form_error(admin_client):
    response = admin_client.post(
        reverse("admin:audiences_audience_add"),
        {"name": "Like buyers", "kind": "lookalike", "rule": "{}", "reach_percent": 5},
    )
    assert response.status_code == 200  # the form again, with the error
    assert not Audience.objects.exists()


def test_audience_created_in_admin_records_its_author(admin_client, superuser):
    response = admin_client.post(
        reverse("admin:audiences_audience_add"),
        {"name": "Hikers", "kind": "rule", "rule": '{"category": "INT"}', "reach_percent": 5},
    )
    assert response.status_code == 302
    assert Audience.objects.get(name="Hikers").created_by == superuser


def test_category_in_the_wrong_tier_is_a_form_error(admin_client):
    parent = CategoryFactory(code="INT", tier=1)
    response = admin_client.post(
        reverse("admin:audiences_category_add"),
        {"code": "INT-X", "name": "X", "kind": "interest", "parent": parent.pk, "tier": 5},
    )
    assert response.status_code == 200
    assert "tier 2, not 5" in response.content.decode()
