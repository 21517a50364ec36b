"""The result file of an access request is downloaded from the request's admin page (not a
public media URL), by those who may see personal data, and every download is recorded."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from consent.dsar import dsar_create, dsar_process, dsar_verify
from consent.models import DataSubjectRequestAction
from tests.factories import IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def answered(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    profile = ProfileFactory(traits={"email": "lotte@example.com"})
    IdentityFactory(profile=profile, kind="email", value="lotte@example.com")
    request = dsar_create(kind="access", email="lotte@example.com")
    dsar_verify(request=request)
    return dsar_process(request=request)


def test_privacy_officer_downloads_the_result_from_the_admin(answered, user_with_role):
    officer = user_with_role("Privacy officer")
    browser = Client()
    browser.force_login(officer)
    page = browser.get(reverse("admin:consent_datasubjectrequest_change", args=[answered.pk]))
    download = reverse("admin:consent_datasubjectrequest_result", args=[answered.pk])
    assert download in page.content.decode()
    assert "/media/" not in page.content.decode()

    response = browser.get(download)

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    assert b"".join(response.streaming_content)[:2] == b"PK"  # a zip
    recorded = DataSubjectRequestAction.objects.get(request=answered, action="downloaded")
    assert recorded.actor == officer


def masked_request_reader():
    """Staff who may read requests but not see personal data (a custom role)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("reader", password="pw-1", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_datasubjectrequest"))
    return user


def test_a_role_without_personal_data_cannot_download(answered):
    browser = Client()
    browser.force_login(masked_request_reader())
    page = browser.get(reverse("admin:consent_datasubjectrequest_change", args=[answered.pk]))
    assert "needs the personal data permission" in page.content.decode()
    response = browser.get(reverse("admin:consent_datasubjectrequest_result", args=[answered.pk]))
    assert response.status_code == 403
    assert not DataSubjectRequestAction.objects.filter(action="downloaded").exists()


def test_api_download_is_recorded_too(answered, api_client_with_scopes):
    client = api_client_with_scopes("consent:read", "pii:read")
    response = client.get(f"/api/consent/requests/{answered.pk}/result/")
    assert response.status_code == 200
    assert DataSubjectRequestAction.objects.filter(action="downloaded").count() == 1
