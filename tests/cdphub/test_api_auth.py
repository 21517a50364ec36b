from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from cdphub.hashing import secret_hash
from cdphub.models import ApiKey
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def test_missing_key_is_401_with_a_json_error():
    response = APIClient().get("/api/profiles/")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Api-Key"


def test_invalid_key_is_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Api-Key cdp_not-a-real-key")

    response = client.get("/api/profiles/")

    assert response.status_code == 401
    assert response.json()["message"] == "Invalid or revoked API key."


def test_revoked_key_is_401(api_client_with_scopes):
    client = api_client_with_scopes("profiles:read")
    ApiKey.objects.update(revoked_at=timezone.now())

    assert client.get("/api/profiles/").status_code == 401


def test_key_without_the_apps_scope_is_403(api_client_with_scopes):
    client = api_client_with_scopes("crm:read")

    response = client.get("/api/profiles/")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_read_scope_reads_but_does_not_write(api_client_with_scopes):
    profile = ProfileFactory()
    client = api_client_with_scopes("profiles:read")

    assert client.get("/api/profiles/").status_code == 200
    response = client.patch(
        f"/api/profiles/{profile.pk}/", {"traits": {"plan": "gold"}}, format="json"
    )
    assert response.status_code == 403


def test_write_scope_updates(api_client_with_scopes):
    profile = ProfileFactory(traits={"plan": "silver"})
    client = api_client_with_scopes("profiles:read", "profiles:write")

    response = client.patch(
        f"/api/profiles/{profile.pk}/", {"traits": {"plan": "gold"}}, format="json"
    )

    assert response.status_code == 200
    profile.refresh_from_db()
    assert profile.traits == {"plan": "gold"}


def test_bad_input_names_the_field(api_client_with_scopes):
    profile = ProfileFactory()
    client = api_client_with_scopes("profiles:write")

    response = client.patch(
        f"/api/profiles/{profile.pk}/", {"traits": ["not", "an", "object"]}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert "traits" in body["errors"]
    assert "traits" in body["message"]


def test_pii_is_masked_without_the_pii_scope(api_client_with_scopes):
    profile = ProfileFactory(
        traits={"email": "anna@example.com", "firstName": "Anna", "plan": "gold"}
    )
    IdentityFactory(profile=profile, value="anna@example.com")

    masked = api_client_with_scopes("profiles:read").get(f"/api/profiles/{profile.pk}/").json()
    clear = (
        api_client_with_scopes("profiles:read", "pii:read")
        .get(f"/api/profiles/{profile.pk}/")
        .json()
    )

    assert "anna@example.com" not in str(masked)
    assert "Anna" not in str(masked)
    assert masked["traits"]["plan"] == "gold"
    assert clear["traits"]["email"] == "anna@example.com"
    assert clear["identities"][0]["value"] == "anna@example.com"


def test_merged_profile_id_answers_with_the_survivor(api_client_with_scopes):
    survivor = ProfileFactory()
    merged = ProfileFactory(merged_into=survivor)

    response = api_client_with_scopes("profiles:read").get(f"/api/profiles/{merged.pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == survivor.pk


def test_session_user_needs_model_permissions(client, user_with_role):
    analyst = user_with_role("Analyst")
    profile = ProfileFactory()
    client.force_login(analyst)

    assert client.get("/api/profiles/").status_code == 200
    response = client.patch(
        f"/api/profiles/{profile.pk}/", {"traits": {}}, content_type="application/json"
    )
    assert response.status_code == 403


def test_create_api_key_prints_the_key_once_and_stores_only_its_hash(capsys):
    call_command("create_api_key", "--name", "Shop sync", "--scopes", "profiles:read,crm:write")

    key = capsys.readouterr().out.splitlines()[1]
    api_key = ApiKey.objects.get()
    assert api_key.scopes == ["crm:write", "profiles:read"]
    assert api_key.key_hash == secret_hash(key)
    assert not ApiKey.objects.filter(key_hash=key).exists()
    assert key not in str(ApiKey.objects.values_list())


def test_create_api_key_refuses_unknown_scopes():
    with pytest.raises(CommandError, match="unknown scope"):
        call_command("create_api_key", "--name", "x", "--scopes", "everything")
    assert not ApiKey.objects.exists()


def test_schema_and_docs_are_served():
    schema = APIClient().get("/api/schema/")
    docs = APIClient().get("/api/docs/")

    assert schema.status_code == 200
    assert b"/api/profiles/" in schema.content
    assert b"ApiKey" in schema.content
    assert docs.status_code == 200
    assert b"/static/drf_spectacular_sidecar/" in docs.content  # served locally, works offline
    assert b"jsdelivr" not in docs.content


def test_profiles_can_be_found_by_any_form_of_an_identifier(api_client_with_scopes):
    wanted = ProfileFactory()
    IdentityFactory(profile=wanted, kind="email", value="anna@example.com")
    IdentityFactory(profile=wanted, kind="phone", value="+31612345678")
    ProfileFactory()
    client = api_client_with_scopes("profiles:read", "pii:read")  # e-mails and phones: personal

    def found(value):
        return [
            p["id"] for p in client.get("/api/profiles/", {"identity": value}).json()["results"]
        ]

    assert found(" ANNA@example.com") == [wanted.pk]
    assert found("06 12345678") == [wanted.pk]
    assert found("nobody@example.com") == []


def test_a_keys_last_use_is_recorded_at_most_once_a_minute(api_client_with_scopes):
    client = api_client_with_scopes("profiles:read")
    assert client.get("/api/profiles/").status_code == 200
    key = ApiKey.objects.get()
    first = key.last_used_at
    assert first is not None

    client.get("/api/profiles/")
    key.refresh_from_db()
    assert key.last_used_at == first  # not a write per request

    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/profiles/")
    key.refresh_from_db()
    assert key.last_used_at > first
