"""A source's allowed origins: checked when written, trusted proxies for the sender's address."""

from __future__ import annotations

import json

import pytest

from profiles.ingest.collect import client_ip, source_cache_clear
from profiles.models import PendingMessage, Source
from profiles.services import source_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "origin",
    [
        "shop.example.com",
        "https://shop.example.com/path",
        "ftp://shop.example.com",
        "https://",
        "*.example.com",
    ],
)
def test_an_origin_that_is_not_one_is_refused_naming_the_item(origin):
    with pytest.raises(Exception, match="item 2"):
        source_create(name="Shop", allowed_origins=["https://ok.example", origin])
    assert not Source.objects.exists()


def test_the_api_refuses_a_bad_origin_with_the_field(api_client_with_scopes):
    api = api_client_with_scopes("profiles:read", "profiles:write")
    answer = api.post(
        "/api/sources/",
        {"name": "Shop", "allowed_origins": ["https://shop.example.com/", "shop"]},
        format="json",
    )
    assert answer.status_code == 400
    assert "allowed_origins" in answer.json()["errors"]
    good = api.post(
        "/api/sources/",
        {"name": "Shop", "allowed_origins": ["https://shop.example.com"]},
        format="json",
    )
    assert good.status_code == 201 and good.json()["allowed_origins"] == [
        "https://shop.example.com"
    ]


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "198.51.100.7", "10.0.0.2"),  # no proxy trusted: the connection's address
        (1, "198.51.100.7", "198.51.100.7"),  # nginx in front: what it saw
        (1, "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # a client's own entry is not trusted
        (2, "198.51.100.7", "10.0.0.2"),  # fewer entries than proxies: not trusted
    ],
)
def test_the_senders_address_trusts_only_the_configured_proxies(
    settings, proxies, forwarded, expected
):
    settings.CDPHUB_TRUSTED_PROXIES = proxies
    meta = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": forwarded}
    assert client_ip(meta) == expected


def test_a_trusted_proxy_gives_the_address_of_a_collected_message(settings, client):
    settings.CDPHUB_TRUSTED_PROXIES = 1
    settings.CDPHUB_INGEST_PROCESSING = "off"
    source_cache_clear()
    _, key = source_create(name="Shop")
    body = {"writeKey": key, "type": "track", "event": "E", "userId": "u"}
    client.post(
        "/v1/track",
        json.dumps(body),
        content_type="text/plain",
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    assert PendingMessage.objects.get().payload["context"]["ip"] == "198.51.100.7"
