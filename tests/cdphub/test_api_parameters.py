"""Every list refuses query parameters it does not know, naming the ones it takes: an
integration that guesses ``?email=`` gets a 400, not the whole list to act on."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.factories import ProfileFactory

pytestmark = pytest.mark.django_db

SCOPES = [
    f"{app}:{access}"
    for app in ("profiles", "crm", "audiences", "consent")
    for access in ("read", "write")
]


def list_paths() -> list[str]:
    """The path of every list operation in the OpenAPI schema."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return sorted(
        path
        for path, operations in schema["paths"].items()
        if operations.get("get", {}).get("operationId", "").endswith("_list") and "{" not in path
    )


def test_the_walk_finds_the_lists():
    assert {"/api/profiles/", "/api/crm/contacts/", "/api/segments/"} <= set(list_paths())


@pytest.mark.parametrize("path", list_paths())
def test_every_list_refuses_an_unknown_parameter(api_client_with_scopes, path):
    client = api_client_with_scopes(*SCOPES, "pii:read")
    response = client.get(path, {"bogus_filter": "1"})
    assert response.status_code == 400, path
    assert "unknown query parameter" in response.json()["errors"]["bogus_filter"][0]


def test_the_refusal_names_what_the_list_takes(api_client_with_scopes):
    ProfileFactory()
    client = api_client_with_scopes("profiles:read", "pii:read")
    response = client.get("/api/profiles/", {"email": "someone@example.com"})
    assert response.status_code == 400
    message = response.json()["errors"]["email"][0]
    assert "identity" in message and "cursor" in message and "page_size" in message
    ok = client.get("/api/profiles/", {"identity": "u-1", "page_size": 5, "ordering": "-id"})
    assert ok.status_code == 200
