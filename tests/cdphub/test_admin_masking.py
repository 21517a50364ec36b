"""Masking in the admin is decided per request: Django keeps one ModelAdmin instance per model
for every request and thread, so nothing about one request may be stored on it."""

from __future__ import annotations

import threading

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.urls import reverse

from profiles.models import Identity, Segment, SegmentMembership
from tests.factories import IdentityFactory, ProfileFactory

EMAIL = "anna.concurrent@example.com"


def seeded() -> tuple[int, int]:
    profile = ProfileFactory(traits={"name": "Anna Concurrent", "email": EMAIL})
    IdentityFactory(profile=profile, kind=Identity.Kind.EMAIL, value=EMAIL)
    segment = Segment.objects.create(name="Everyone", kind=Segment.Kind.STATIC)
    SegmentMembership.objects.create(
        segment=segment, profile=profile, entered_at=profile.created_at
    )
    return profile.pk, segment.pk


def pages(profile_id: int, segment_id: int) -> list[str]:
    return [
        reverse("admin:profiles_profile_changelist"),
        reverse("admin:profiles_profile_change", args=[profile_id]),
        reverse("admin:profiles_identity_changelist"),
        reverse("admin:profiles_segment_change", args=[segment_id]),
        reverse("admin:audiences_audienceexport_changelist"),
    ]


@pytest.mark.django_db
def test_no_model_admin_keeps_state_from_a_request(client, superuser, user_with_role):
    # Given every admin page a masked and an unmasked user open
    profile_id, segment_id = seeded()
    before = {model: dict(vars(model_admin)) for model, model_admin in admin.site._registry.items()}
    analyst = Client()
    analyst.force_login(user_with_role("Analyst"))
    client.force_login(superuser)
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls = [reverse("admin:{}_{}_changelist".format(*info))]
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[first.pk]))
        for url in urls:
            client.get(url)
            analyst.get(url)
    for url in pages(profile_id, segment_id):
        assert client.get(url).status_code == 200, url
        assert analyst.get(url).status_code == 200, url

    # Then no admin instance gained or changed an attribute
    changed = {
        model.__name__: sorted(
            key
            for key in set(vars(model_admin)) | set(before[model])
            if vars(model_admin).get(key, "-") is not before[model].get(key, "-")
        )
        for model, model_admin in admin.site._registry.items()
    }
    assert {name: keys for name, keys in changed.items() if keys} == {}


@pytest.mark.django_db(transaction=True)
def test_masked_role_never_sees_personal_data_while_an_admin_browses(superuser, user_with_role):
    profile_id, segment_id = seeded()
    analyst = user_with_role("Analyst")
    urls = pages(profile_id, segment_id)[:4]
    leaks: list[str] = []
    errors: list[BaseException] = []

    def browse(user, check: bool) -> None:
        browser = Client()
        browser.force_login(user)
        try:
            for _ in range(15):
                for url in urls:
                    response = browser.get(url)
                    assert response.status_code == 200, url
                    if check and EMAIL in response.content.decode():
                        leaks.append(url)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=browse, args=(superuser, False)),
        threading.Thread(target=browse, args=(analyst, True)),
        threading.Thread(target=browse, args=(superuser, False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert leaks == []
