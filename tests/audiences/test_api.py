import pytest
from rest_framework.test import APIClient

from audiences.models import (
    Audience,
    AudienceExport,
    Category,
    DataProvider,
    ProviderFileImport,
    Visitor,
)
from tests.factories import (
    AudienceFactory,
    CategoryFactory,
    DataProviderFactory,
    VisitorFactory,
    VisitorTraitHitFactory,
)

pytestmark = pytest.mark.django_db

LIST_URLS = [
    "/api/audiences/visitors/",
    "/api/audiences/providers/",
    "/api/audiences/categories/",
    "/api/audiences/trait-hits/",
    "/api/audiences/audiences/",
    "/api/audiences/provider-imports/",
    "/api/audiences/exports/",
]


@pytest.fixture
def reader(api_client_with_scopes):
    return api_client_with_scopes("audiences:read")


@pytest.fixture
def writer(api_client_with_scopes):
    return api_client_with_scopes("audiences:read", "audiences:write")


@pytest.fixture
def some_data():
    hit = VisitorTraitHitFactory()
    AudienceFactory()
    ProviderFileImport.objects.create(provider=hit.provider, file="provider_imports/x.csv")
    AudienceExport.objects.create(destination="ids", status="refused")
    return hit


@pytest.mark.parametrize("url", LIST_URLS)
def test_lists_answer_with_the_read_scope(url, reader, some_data):
    response = reader.get(url)
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


@pytest.mark.parametrize("url", LIST_URLS)
def test_lists_need_a_key(url):
    response = APIClient().get(url)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("url", LIST_URLS)
def test_lists_need_the_audiences_scope(url, api_client_with_scopes):
    response = api_client_with_scopes("profiles:read", "profiles:write").get(url)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/audiences/providers/", {"name": "DataCo", "party": "third", "retention_days": 30}),
        ("/api/audiences/categories/", {"code": "INT", "name": "Interest", "kind": "interest"}),
        ("/api/audiences/audiences/", {"name": "Hikers", "rule": {"category": "INT-OUT-HIKE"}}),
    ],
)
def test_writing_needs_the_write_scope(url, body, reader, writer):
    assert reader.post(url, body, format="json").status_code == 403
    assert writer.post(url, body, format="json").status_code == 201


def test_provider_create_and_bad_retention(writer):
    response = writer.post(
        "/api/audiences/providers/", {"name": "DataCo", "retention_days": 0}, format="json"
    )
    assert response.status_code == 400
    assert "retention_days" in response.json()["errors"]
    assert not DataProvider.objects.exists()


def test_category_child_gets_the_next_tier(writer):
    CategoryFactory(code="INT", kind="interest", tier=1)
    response = writer.post(
        "/api/audiences/categories/",
        {"code": "INT-HIKE", "name": "Hiking", "kind": "interest", "parent_code": "INT", "tier": 2},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert Category.objects.get(code="INT-HIKE").parent.code == "INT"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tier": 3}, "tier"),
        ({"tier": 2, "kind": "demographic"}, "kind"),
        ({"tier": 2, "parent_code": "NOPE"}, "parent_code"),
    ],
)
def test_category_bad_tree_is_refused_with_the_field(writer, body, field):
    CategoryFactory(code="INT", kind="interest", tier=1)
    payload = {"code": "INT-X", "name": "X", "kind": "interest", "parent_code": "INT", **body}
    response = writer.post("/api/audiences/categories/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Category.objects.filter(code="INT-X").exists()


def test_lookalike_without_seed_is_refused(writer):
    response = writer.post(
        "/api/audiences/audiences/", {"name": "Like buyers", "kind": "lookalike"}, format="json"
    )
    assert response.status_code == 400
    assert "seed_segment" in response.json()["errors"]
    assert not Audience.objects.exists()


def test_audience_rule_must_be_an_object(writer):
    response = writer.post(
        "/api/audiences/audiences/", {"name": "Bad", "rule": [1, 2]}, format="json"
    )
    assert response.status_code == 400
    assert "rule" in response.json()["errors"]


def test_visitor_filters_and_delete(reader, writer):
    linked = VisitorFactory(key="abc", profile=None)
    VisitorFactory(key="other")
    response = reader.get("/api/audiences/visitors/", {"key": "abc"})
    assert [v["key"] for v in response.json()["results"]] == ["abc"]
    assert reader.delete(f"/api/audiences/visitors/{linked.pk}/").status_code == 403
    assert writer.delete(f"/api/audiences/visitors/{linked.pk}/").status_code == 204
    assert not Visitor.objects.filter(key="abc").exists()


def test_visitor_bad_filter_value_is_a_400(reader):
    response = reader.get("/api/audiences/visitors/", {"last_seen_at__gte": "last tuesday"})
    assert response.status_code == 400
    assert "last_seen_at__gte" in response.json()["errors"]


def test_trait_hits_filter_by_category_code(reader):
    hit = VisitorTraitHitFactory(category=CategoryFactory(code="INT-RUN"))
    VisitorTraitHitFactory()
    response = reader.get("/api/audiences/trait-hits/", {"category_code": "INT-RUN"})
    assert [h["id"] for h in response.json()["results"]] == [hit.pk]
    assert response.json()["results"][0]["category_code"] == "INT-RUN"


def test_trait_hits_are_read_only(writer, some_data):
    response = writer.post("/api/audiences/trait-hits/", {}, format="json")
    assert response.status_code == 405


def test_session_user_needs_model_permission(client, user_with_role, some_data):
    client.force_login(user_with_role("Sales"))
    assert client.get("/api/audiences/audiences/").status_code == 403
    client.force_login(user_with_role("Analyst"))
    assert client.get("/api/audiences/audiences/").status_code == 200


def test_provider_file_upload(writer, reader, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.utils import timezone

    provider = DataProviderFactory()
    CategoryFactory(code="INT-HIKE")
    content = f"cookie_id,category,timestamp\nck-1,INT-HIKE,{timezone.now().isoformat()}\n"

    def upload():
        return {"provider": provider.pk, "file": SimpleUploadedFile("s.csv", content.encode())}

    url = "/api/audiences/provider-imports/"
    assert reader.post(url, upload(), format="multipart").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        response = writer.post(url, upload(), format="multipart")
    assert response.status_code == 201, response.json()
    job = writer.get(f"{url}{response.json()['id']}/").json()
    assert (job["status"], job["imported_rows"], job["progress_percent"]) == ("done", 1, 100)


def test_provider_file_upload_with_wrong_columns(writer):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = writer.post(
        "/api/audiences/provider-imports/",
        {"provider": DataProviderFactory().pk, "file": SimpleUploadedFile("s.csv", b"a,b\n1,2\n")},
        format="multipart",
    )
    assert response.status_code == 400
    assert "cookie_id or device_id" in response.json()["errors"]["file"][0]
    assert not ProviderFileImport.objects.exists()
