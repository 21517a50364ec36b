"""Destinations as a marketer configures them: the checks when one is written (a URL that is
invalid or reaches an internal address, an unknown purpose), the signing secret shown once,
the audit trail, the filters of what each receives through the real processing path, and the
admin pages with their permissions."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from cdphub.delivery import deliveries_send
from cdphub.models import AuditEntry, Delivery
from profiles.destinations.services import (
    destination_create,
    destination_pause,
    destination_update,
)
from profiles.models import Destination
from profiles.services import source_create
from tests.cdphub.test_delivery import Answer, ScriptedReceiver, collect

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def engine(delivery_engine):
    return delivery_engine


def create(url="http://127.0.0.1:9/hook", **options):
    return destination_create(
        name=options.pop("name", "Partner"),
        kind=options.pop("kind", "webhook"),
        config=options.pop("config", {"url": url}),
        purpose_code=options.pop("purpose_code", "analytics"),
        **options,
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "url: the URL must start with https:// or http://"),
        ("ftp://files.example.com/x", "url: the URL must start with https:// or http://"),
        ("http://:80/", "url: the URL has no host"),
        ("http://10.1.2.3/hook", "url: 10.1.2.3 is a private address: requests to internal"),
        ("http://169.254.169.254/latest", "url: 169.254.169.254 is the cloud metadata address"),
        ("http://localhost:8000/", "is a loopback address"),
    ],
)
def test_an_invalid_or_internal_url_is_refused_when_configured(engine, url, message):
    engine.CDPHUB_OUTBOUND_ALLOWLIST = []
    with pytest.raises(ValidationError) as refused:
        create(url)
    assert message in refused.value.message_dict["config"][0]
    assert not Destination.objects.exists()


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"purpose_code": "telepathy"}, "purpose_code", "'telepathy' is not an active consent"),
        ({"kind": "carrier_pigeon"}, "kind", "unknown destination kind 'carrier_pigeon'"),
        ({"config": {"url": "http://127.0.0.1:9/", "token": "x"}}, "config", "unknown settings"),
        (
            {"config": {"url": "http://127.0.0.1:9/", "headers": {"Idempotency-Key": "x"}}},
            "config",
            "headers: Idempotency-Key is set by cdphub itself",
        ),
        ({"batch_size": 0}, "batch_size", "greater than or equal to 1"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(options, field, message):
    with pytest.raises(ValidationError) as refused:
        create(**options)
    assert message in str(refused.value.message_dict[field])


def test_the_signing_secret_is_returned_once_and_the_changes_are_audited(superuser):
    destination, secret = create(actor=superuser)
    assert secret.startswith("whsec_") and len(secret) > 40
    assert destination.secret_prefix == secret[:10]

    destination_update(destination=destination, event_names=["Order Completed"], actor=superuser)
    destination_pause(destination=destination, reason="receiver migration", actor=superuser)

    actions = list(
        AuditEntry.objects.filter(object_id=str(destination.pk))
        .order_by("id")
        .values_list("action", "note")
    )
    assert actions == [
        ("destination.create", "webhook"),
        ("destination.update", "changed: event_names"),
        ("destination.pause", "receiver migration"),
    ]


def test_an_update_checks_the_url_again(engine):
    destination, _ = create()
    engine.CDPHUB_OUTBOUND_ALLOWLIST = []
    with pytest.raises(ValidationError, match="loopback"):
        destination_update(destination=destination, config={"url": "http://127.0.0.1:9/x"})


def test_a_destination_receives_only_its_source_types_and_names():
    shop = source_create(name="Shop")[0]
    app = source_create(name="App")[0]
    with ScriptedReceiver() as receiver:
        create(receiver.url, source=shop, event_types=["track"], event_names=["Order Completed"])
        collect(shop, "Order Completed", "Cart Viewed")
        collect(app, "Order Completed", user="u-app")

        deliveries_send()

    assert [[i["event"] for i in batch] for batch in receiver.batches] == [["Order Completed"]]
    assert receiver.batches[0][0]["userId"] == "u-1"


# --- Admin ----------------------------------------------------------------------------------


def test_a_marketer_adds_a_destination_and_sees_the_secret_once(client, user_with_role):
    client.force_login(user_with_role("Marketer"))
    with ScriptedReceiver() as receiver:
        response = client.post(
            reverse("admin:profiles_destination_add"),
            {
                "name": "Support desk",
                "kind": "webhook",
                "config": f'{{"url": "{receiver.url}", "headers": {{}}}}',
                "event_types": ["track"],
                "event_names": "Order Completed,Ticket Opened",
                "purpose_code": "analytics",
                "batch_size": "50",
                "batch_interval_seconds": "0",
            },
            follow=True,
        )
    assert response.status_code == 200
    destination = Destination.objects.get(name="Support desk")
    shown = [str(m) for m in response.context["messages"]]
    assert any(destination.signing_secret in m and "shown only once" in m for m in shown)
    assert destination.event_names == ["Order Completed", "Ticket Opened"]

    page = client.get(reverse("admin:profiles_destination_change", args=[destination.pk]))
    assert page.status_code == 200
    assert destination.signing_secret not in page.content.decode()
    assert "0 delivered, 0 waiting, 0 retrying, 0 dead, 0 skipped" in page.content.decode()


def test_the_admin_refuses_an_internal_url_with_the_reason(admin_client, engine):
    engine.CDPHUB_OUTBOUND_ALLOWLIST = []
    response = admin_client.post(
        reverse("admin:profiles_destination_add"),
        {
            "name": "Sneaky",
            "kind": "webhook",
            "config": '{"url": "http://10.0.0.7:6379/"}',
            "purpose_code": "analytics",
            "batch_size": "100",
            "batch_interval_seconds": "0",
        },
    )
    assert response.status_code == 200
    assert "10.0.0.7 is a private address" in response.content.decode()
    assert not Destination.objects.exists()


def test_dead_letters_are_counted_shown_and_retried_from_the_admin(client, user_with_role):
    refused = Answer(status=422, body=b'{"error": "email is required"}')
    with ScriptedReceiver(refused) as receiver:
        destination, _ = create(receiver.url)
        collect(source_create(name="Shop")[0], "A")
        deliveries_send()
        client.force_login(user_with_role("Marketer"))

        page = client.get(reverse("admin:profiles_destination_change", args=[destination.pk]))
        assert "0 delivered, 0 waiting, 0 retrying, 1 dead" in page.content.decode()
        assert "answered 422 (refused)" in page.content.decode()
        dead = Delivery.objects.get(status="dead")
        page = client.get(reverse("admin:cdphub_delivery_change", args=[dead.pk]))
        assert "email is required" in page.content.decode()

        response = client.post(
            reverse("admin:cdphub_delivery_changelist"),
            {"action": "retry", "_selected_action": [dead.pk]},
            follow=True,
        )
        assert "1 dead letters queued again." in response.content.decode()
        deliveries_send()

    assert Delivery.objects.get(pk=dead.pk).status == "delivered"
    assert len(receiver.requests) == 2


def test_roles_without_personal_data_see_payloads_masked(client, user_with_role):
    with ScriptedReceiver(Answer(status=400, body=b"bad: jane@example.com")) as receiver:
        destination, _ = create(receiver.url)
        shop = source_create(name="Shop")[0]
        collect(shop, "A", user="jane@example.com")
        deliveries_send()
    dead = Delivery.objects.get(destination=destination)
    client.force_login(user_with_role("Data engineer"))

    page = client.get(reverse("admin:cdphub_delivery_change", args=[dead.pk])).content.decode()

    assert "jane@example.com" not in page
    assert "•••" in page


def test_the_pages_need_the_destination_permissions(client, user_with_role):
    destination, _ = create()
    client.force_login(user_with_role("Sales"))  # may view profiles, not change them
    assert client.get(reverse("admin:profiles_destination_changelist")).status_code == 200
    assert client.get(reverse("admin:cdphub_delivery_changelist")).status_code == 200
    assert client.get(reverse("admin:profiles_destination_add")).status_code == 403
    client.post(
        reverse("admin:profiles_destination_changelist"),
        {"action": "pause", "_selected_action": [destination.pk]},
    )
    assert Destination.objects.get(pk=destination.pk).status == "active"

    client.force_login(user_with_role("Data engineer"))
    response = client.post(
        reverse("admin:profiles_destination_changelist"),
        {"action": "pause", "_selected_action": [destination.pk]},
    )
    assert response.status_code == 302
    assert Destination.objects.get(pk=destination.pk).status == "paused"


def test_the_receivers_credentials_are_masked_for_those_who_may_only_look(client, user_with_role):
    destination, _ = create(
        config={"url": "http://127.0.0.1:9/hook", "headers": {"Authorization": "Bearer tok-42"}}
    )
    page = reverse("admin:profiles_destination_change", args=[destination.pk])
    client.force_login(user_with_role("Sales"))
    seen = client.get(page)
    assert seen.status_code == 200
    assert b"Authorization" in seen.content and b"tok-42" not in seen.content
    client.force_login(user_with_role("Marketer"))
    assert b"tok-42" in client.get(page).content  # who may change it sees what it sends


def test_every_kind_says_what_it_takes_and_what_it_can_do():
    """The interface every kind implements: a registered kind missing one of these would fail
    a destination's checks, its sending or an erasure at run time instead."""
    from profiles.destinations.kinds import _kinds

    assert set(_kinds) == {
        "webhook",
        "segment_forward",
        "mailchimp",
        "warehouse",
        "meta_custom_audience",
        "google_customer_match",
    }
    for code, kind in _kinds.items():
        assert kind.code == code and kind.label
        for flag in ("signs", "deletes", "receives_events"):
            assert isinstance(getattr(kind, flag), bool), (code, flag)
        for method in ("config_validate", "config_masked", "send"):
            assert callable(getattr(kind, method)), (code, method)
