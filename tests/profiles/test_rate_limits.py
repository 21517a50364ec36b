"""Rate limits of collection: the bucket rule in both of its homes (process memory and Redis,
one set of cases for both), the answers senders get (429, Retry-After, what a batch keeps),
the counts per source, and the limits shared by several web processes through Redis."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from profiles.ingest.collect import source_cache_clear
from profiles.ingest.limits import Limit, MemoryBuckets, RedisBuckets, buckets_reset
from profiles.models import PendingMessage, RateLimitedDay, Source
from profiles.services import source_create
from tests.profiles.test_collect import post
from tests.profiles.test_collect_browser import send
from tests.profiles.test_collect_worker import require_redis
from tests.server import current_database_url, running_server

# A Redis database of its own: no other test's keys, and none of a running hub's.
REDIS_URL = "redis://127.0.0.1:6379/14"
HOUR = 3600.0


@pytest.fixture(params=["memory", "redis"])
def buckets(request):
    if request.param == "memory":
        yield MemoryBuckets()
        return
    require_redis()
    redis_buckets = RedisBuckets(REDIS_URL)
    redis_buckets.clear()
    yield redis_buckets
    redis_buckets.clear()


def take(buckets, key, limit, cost, partial=False):
    return buckets.take([(key, limit, cost, partial)])[0]


def test_a_burst_passes_then_the_rest_waits_for_its_interval(buckets):
    slow = Limit(rate=1, period=HOUR, burst=3)  # three at once, then one an hour
    assert take(buckets, "k", slow, 2).allowed == 2
    refused = take(buckets, "k", slow, 2)
    assert refused.allowed == 0
    # The bucket holds one message: two fit an hour from now.
    assert refused.retry_after == pytest.approx(HOUR, abs=2)
    assert take(buckets, "k", slow, 1).allowed == 1
    assert take(buckets, "k", slow, 1).allowed == 0


def test_partial_lets_through_what_fits(buckets):
    slow = Limit(rate=1, period=HOUR, burst=3)
    partial = take(buckets, "k", slow, 5, partial=True)
    assert partial.allowed == 3
    assert partial.retry_after == pytest.approx(HOUR, abs=2)
    assert take(buckets, "k", slow, 1, partial=True).allowed == 0


def test_a_request_larger_than_the_burst_passes_on_a_full_bucket_only(buckets):
    slow = Limit(rate=1, period=HOUR, burst=3)
    assert take(buckets, "k", slow, 10).allowed == 10
    refused = take(buckets, "k", slow, 1)
    assert refused.allowed == 0
    # Ten messages took ten intervals: the first one fits again after eight of them.
    assert refused.retry_after == pytest.approx(8 * HOUR, abs=2)


def test_keys_are_separate_and_one_call_answers_each(buckets):
    slow = Limit(rate=1, period=HOUR, burst=1)
    answers = buckets.take([("a", slow, 1, False), ("b", slow, 2, True), ("a", slow, 1, False)])
    assert [answer.allowed for answer in answers] == [1, 1, 0]


def test_the_bucket_fills_again_at_its_rate(buckets):
    fast = Limit(rate=100, period=1.0, burst=2)
    assert take(buckets, "k", fast, 2).allowed == 2
    assert take(buckets, "k", fast, 1).allowed == 0
    time.sleep(0.05)  # five intervals: the bucket is full again (two)
    assert take(buckets, "k", fast, 2).allowed == 2


def test_redis_out_of_reach_lets_everything_through(caplog):
    unreachable = RedisBuckets("redis://127.0.0.1:1/0")
    slow = Limit(rate=1, period=HOUR, burst=1)
    assert take(unreachable, "k", slow, 5).allowed == 5
    assert "rate limits not applied" in caplog.text


# --- The collection endpoints -----------------------------------------------------------------


@pytest.fixture
def limited(db, settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"
    settings.CDPHUB_REDIS_URL = None
    buckets_reset()
    source_cache_clear()
    yield
    buckets_reset()
    source_cache_clear()


def limited_source(**limits) -> tuple[Source, str]:
    source, key = source_create(name="Shop", allowed_origins=["https://shop.example.com"])
    Source.objects.filter(pk=source.pk).update(**limits)
    return source, key


def track(user: str, n: int = 1) -> list[dict]:
    return [
        {"type": "track", "userId": user, "event": "Viewed", "messageId": f"{user}-{i}"}
        for i in range(n)
    ]


def test_a_source_over_its_rate_gets_429_with_retry_after_and_nothing_is_stored(client, limited):
    source, key = limited_source(rate_limit_per_second=1, rate_limit_burst=5)
    assert post(client, "/v1/batch", {"batch": track("ann", 5)}, key).status_code == 200
    response = post(client, "/v1/batch", {"batch": track("bob", 2)}, key)
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert "more than 1 messages per second (burst 5)" in response.json()["message"]
    assert int(response["Retry-After"]) >= 1
    assert PendingMessage.objects.filter(source=source).count() == 5
    counts = RateLimitedDay.objects.get(source=source)
    assert (counts.source_limited, counts.identifier_limited) == (2, 0)


def test_one_sender_over_its_limit_loses_only_its_own_extra_messages(client, limited):
    source, key = limited_source(identifier_limit_per_minute=3)
    batch = track("runaway", 5) + track("calm", 2)
    response = post(client, "/v1/batch", {"batch": batch}, key)
    assert response.status_code == 200
    answer = response.json()
    assert answer["accepted"] == 5
    assert [item["index"] for item in answer["rate_limited"]] == [3, 4]
    assert (
        "this userId sent more than 3 messages in a minute" in answer["rate_limited"][0]["reason"]
    )
    stored = set(PendingMessage.objects.filter(source=source).values_list("message_id", flat=True))
    assert stored == {"runaway-0", "runaway-1", "runaway-2", "calm-0", "calm-1"}
    # A request of the runaway sender alone: nothing of it passes, so 429.
    single = post(client, "/v1/t", {**track("runaway")[0], "messageId": "later"}, key)
    assert single.status_code == 429
    assert int(single["Retry-After"]) >= 1
    counts = RateLimitedDay.objects.get(source=source)
    assert (counts.source_limited, counts.identifier_limited) == (0, 3)


def test_anonymous_ids_are_limited_too_and_apart_from_user_ids(client, limited):
    _, key = limited_source(identifier_limit_per_minute=2)
    anonymous = [{"type": "page", "anonymousId": "a-1", "messageId": f"p{i}"} for i in range(3)]
    answer = post(client, "/v1/batch", {"batch": anonymous + track("a-1", 2)}, key).json()
    assert answer["accepted"] == 4
    assert [item["index"] for item in answer["rate_limited"]] == [2]
    assert "this anonymousId sent" in answer["rate_limited"][0]["reason"]


def test_zero_means_no_limit(client, limited):
    source, key = limited_source(rate_limit_per_second=0, identifier_limit_per_minute=0)
    for round_ in range(3):
        batch = [{**m, "messageId": f"{round_}-{m['messageId']}"} for m in track("backfill", 900)]
        assert post(client, "/v1/batch", {"batch": batch}, key).json()["accepted"] == 900
    assert not RateLimitedDay.objects.filter(source=source).exists()


def test_the_defaults_apply_to_a_source_without_its_own_limits(client, limited, settings):
    settings.CDPHUB_IDENTIFIER_RATE_LIMIT = 2
    _, key = limited_source()
    answer = post(client, "/v1/batch", {"batch": track("u", 3)}, key).json()
    assert answer["accepted"] == 2 and len(answer["rate_limited"]) == 1


def test_a_page_can_read_the_429_and_when_to_send_again(client, limited):
    _, key = limited_source(identifier_limit_per_minute=1)
    origin = {"HTTP_ORIGIN": "https://shop.example.com"}
    body = {"writeKey": key, **track("u")[0]}
    assert post(client, "/v1/t", body, **origin).status_code == 200
    response = post(client, "/v1/t", {**body, "messageId": "again"}, **origin)
    assert response.status_code == 429
    assert response["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Retry-After" in response["Access-Control-Expose-Headers"]


# --- Several web processes ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_web_processes_share_the_limits_through_redis():
    require_redis()
    RedisBuckets(REDIS_URL).clear()
    _, key = limited_source(rate_limit_per_second=1, rate_limit_burst=10)
    env = {"CDPHUB_INGEST_PROCESSING": "off", "CDPHUB_REDIS_URL": REDIS_URL}
    with running_server(database_url=current_database_url(), workers=2, env=env) as url:

        def one(i: int) -> int:
            body = json.dumps({"writeKey": key, **track("u", 1)[0], "userId": f"u{i}"})
            return send(f"{url}/v1/t", body=body.encode())[0]

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(one, range(40)))
    # Ten at once, and at most a few more refilled (one a second) while the requests ran:
    # each process counting alone would have let twenty through.
    assert 10 <= statuses.count(200) <= 13, statuses
    assert statuses.count(429) == 40 - statuses.count(200)
    RedisBuckets(REDIS_URL).clear()


@pytest.mark.django_db(transaction=True)
def test_a_deactivated_source_is_refused_by_every_process_within_a_second():
    source, key = limited_source()
    body = json.dumps({"writeKey": key, **track("u", 1)[0]}).encode()
    env = {"CDPHUB_INGEST_PROCESSING": "off", "CDPHUB_IDENTIFIER_RATE_LIMIT": "0"}
    server = running_server(database_url=current_database_url(), workers=2, env=env)
    with server as url, ThreadPoolExecutor(4) as pool:
        # Both processes have the source in their cache.
        assert set(pool.map(lambda _: send(f"{url}/v1/t", body=body)[0], range(20))) == {200}
        Source.objects.filter(pk=source.pk).update(is_active=False)
        time.sleep(1.0)
        statuses = list(pool.map(lambda _: send(f"{url}/v1/t", body=body)[0], range(20)))
    assert set(statuses) == {401}


# --- Setting a source's limits ------------------------------------------------------------------


def test_the_api_sets_a_sources_limits_and_refuses_a_negative_one(api_client_with_scopes):
    api = api_client_with_scopes("profiles:read", "profiles:write")
    created = api.post(
        "/api/sources/",
        {"name": "Backfill", "rate_limit_per_second": 0, "identifier_limit_per_minute": 0},
        format="json",
    )
    assert created.status_code == 201
    source = Source.objects.get(pk=created.json()["id"])
    assert (source.rate_limit_per_second, source.identifier_limit_per_minute) == (0, 0)
    assert source.rate_limit_burst is None
    refused = api.patch(f"/api/sources/{source.pk}/", {"rate_limit_burst": -5}, format="json")
    assert refused.status_code == 400
    assert "rate_limit_burst" in refused.json()["errors"]
    changed = api.patch(f"/api/sources/{source.pk}/", {"rate_limit_burst": 50}, format="json")
    assert changed.status_code == 200 and changed.json()["rate_limit_burst"] == 50


def test_a_source_added_in_the_admin_keeps_its_limits(admin_client):
    response = admin_client.post(
        "/admin/profiles/source/add/",
        {
            "name": "Kiosk",
            "kind": "pos",
            "allowed_origins": "",
            "rate_limit_per_second": "5",
            "rate_limit_burst": "",
            "identifier_limit_per_minute": "30",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    source = Source.objects.get(name="Kiosk")
    assert (source.rate_limit_per_second, source.rate_limit_burst) == (5, None)
    assert source.identifier_limit_per_minute == 30
    page = admin_client.get(f"/admin/profiles/source/{source.pk}/change/")
    assert b"refused for rate limits" in page.content.lower()
