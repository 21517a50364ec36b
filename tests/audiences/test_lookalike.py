import random
from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.lookalike import (
    LookalikeError,
    cosine,
    lookalike_build,
    lookalike_build_request,
    lookalike_build_run,
    reach_size,
    unit_vector,
)
from audiences.models import Audience, AudienceMembership, Visitor, VisitorTraitHit
from audiences.tasks import lookalike_build_later
from cdphub.jobs import recent_jobs
from profiles.models import Profile, Segment, SegmentMembership
from tests.factories import AudienceFactory, CategoryFactory, DataProviderFactory

pytestmark = pytest.mark.django_db

OUTDOOR = ["HIKE", "CAMP", "TENT", "RUN"]
TECH = ["GADGET", "PHONE", "GAMES", "LAPTOP"]
COMMON = ["CITY"]


def visitors_with_tastes(count, liked, rng, categories, provider, linked_to=None):
    """Visitors who mostly have categories from ``liked``, a little noise, and a common one."""
    now = timezone.now()
    created = []
    for number in range(count):
        profile = linked_to[number] if linked_to else None
        visitor = Visitor.objects.create(
            key=f"v-{rng.getrandbits(48):x}",
            first_seen_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(days=90),
            profile=profile,
        )
        codes = set(rng.sample(liked, 2)) | set(COMMON)
        if rng.random() < 0.2:
            codes.add(rng.choice(OUTDOOR + TECH))
        VisitorTraitHit.objects.bulk_create(
            VisitorTraitHit(
                visitor=visitor,
                category=categories[code],
                provider=provider,
                observed_at=now,
                expires_at=now + timedelta(days=30),
            )
            for code in codes
        )
        created.append(visitor)
    return created


@pytest.fixture
def world():
    """A seed segment of outdoor people; unlinked visitors: 40 outdoor-like, 160 tech-like."""
    rng = random.Random(42)
    categories = {code: CategoryFactory(code=code) for code in OUTDOOR + TECH + COMMON}
    provider = DataProviderFactory()
    segment = Segment.objects.create(name="Outdoor buyers", kind="static")
    profiles = [Profile.objects.create() for _ in range(30)]
    for profile in profiles:
        SegmentMembership.objects.create(
            segment=segment, profile=profile, entered_at=timezone.now()
        )
    visitors_with_tastes(30, OUTDOOR, rng, categories, provider, linked_to=profiles)
    outdoor = visitors_with_tastes(40, OUTDOOR, rng, categories, provider)
    tech = visitors_with_tastes(160, TECH, rng, categories, provider)
    audience = AudienceFactory(kind=Audience.Kind.LOOKALIKE, seed_segment=segment, reach_percent=20)
    return audience, outdoor, tech


def test_lookalike_reaches_the_similar_visitors(world):
    audience, outdoor, tech = world

    result = lookalike_build(audience=audience)

    assert (result.seed_visitors, result.candidates) == (30, 200)
    assert result.size == 40  # 20% of 200 unlinked visitors
    members = set(
        AudienceMembership.objects.filter(audience=audience).values_list("visitor", flat=True)
    )
    outdoor_found = len(members & {v.pk for v in outdoor})
    assert outdoor_found >= 36  # nearly all outdoor-like visitors; random would find about 8
    assert not Visitor.objects.filter(pk__in=members, profile__isnull=False).exists()
    audience.refresh_from_db()
    assert audience.size == 40 and audience.seed_size == 30


def test_recall_of_held_out_seed_is_reported_and_beats_random(world):
    audience, _, _ = world
    result = lookalike_build(audience=audience)
    assert result.holdout == 6
    assert result.recall >= 0.8  # random picking would reach about 20%
    audience.refresh_from_db()
    assert audience.lookalike_recall == result.recall


def test_members_carry_their_similarity_scores(world):
    audience, outdoor, tech = world
    lookalike_build(audience=audience)
    scores = dict(AudienceMembership.objects.values_list("visitor", "score"))
    assert all(0 < score <= 1 for score in scores.values())


def test_rebuilding_replaces_members(world):
    audience, _, _ = world
    lookalike_build(audience=audience)
    audience.reach_percent = 5
    audience.save()
    result = lookalike_build(audience=audience)
    assert result.size == 10
    assert AudienceMembership.objects.filter(audience=audience).count() == 10


def test_expired_hits_do_not_count(world):
    audience, _, _ = world
    VisitorTraitHit.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(LookalikeError, match="no linked visitors with live category data"):
        lookalike_build(audience=audience)


def test_rule_audiences_cannot_be_built_as_lookalikes():
    with pytest.raises(LookalikeError, match="not a lookalike"):
        lookalike_build(audience=AudienceFactory())


def test_cosine_of_identical_and_disjoint_vectors():
    idf = {1: 1.0, 2: 2.0, 3: 1.5}
    same = unit_vector({1, 2}, idf)
    assert cosine(same, same) == pytest.approx(1.0)
    assert cosine(unit_vector({3}, idf), same) == 0


@pytest.mark.parametrize(("candidates", "percent", "size"), [(200, 20, 40), (7, 10, 1), (0, 5, 0)])
def test_reach_size_rounds_up(candidates, percent, size):
    assert reach_size(candidates, percent) == size


def test_build_endpoint(world, api_client_with_scopes, django_capture_on_commit_callbacks):
    audience, _, _ = world
    client = api_client_with_scopes("audiences:read", "audiences:write")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/audiences/audiences/{audience.pk}/build/")
    assert response.status_code == 202
    assert client.get(f"/api/audiences/audiences/{audience.pk}/").json()["size"] == 40
    reader = api_client_with_scopes("audiences:read")
    assert reader.post(f"/api/audiences/audiences/{audience.pk}/build/").status_code == 403


def test_build_endpoint_builds_a_rule_audience_from_its_rule(api_client_with_scopes):
    client = api_client_with_scopes("audiences:read", "audiences:write")
    good = client.post(f"/api/audiences/audiences/{AudienceFactory().pk}/build/")
    broken = AudienceFactory(rule={"category": 5})  # stored before rules were checked
    bad = client.post(f"/api/audiences/audiences/{broken.pk}/build/")
    assert (good.status_code, good.json()) == (200, {"size": 0})
    assert bad.status_code == 400
    assert "category" in str(bad.json()["errors"]["rule"])


def test_admin_action_queues_the_build_and_its_page_reports_recall(world, admin_client):
    from django.urls import reverse

    audience, _, _ = world
    response = admin_client.post(
        reverse("admin:audiences_audience_changelist"),
        {"action": "build_lookalike", "_selected_action": [audience.pk]},
        follow=True,
    )
    assert "building in the background" in response.content.decode()
    lookalike_build_run(audience_id=audience.pk)  # what the worker does

    page = admin_client.get(reverse("admin:audiences_audience_change", args=[audience.pk]))
    assert "40 of 200 visitors from a seed of 30" in page.content.decode()
    assert "held-out seed recall" in page.content.decode()


def test_a_build_is_queued_and_its_end_recorded(
    world, superuser, django_capture_on_commit_callbacks
):
    audience, _, _ = world

    # Without a broker the task runs when the request's transaction commits.
    with django_capture_on_commit_callbacks(execute=True):
        lookalike_build_later(lookalike_build_request(audience=audience, actor=superuser))
    audience.refresh_from_db()

    assert audience.build_status == Audience.BuildStatus.READY
    assert audience.build_message.startswith("40 of 200 visitors from a seed of 30")
    assert audience.build_requested_by == superuser
    (job,) = [j for j in recent_jobs(superuser) if j.kind == "Lookalike build"]
    assert (job.running, job.failed, job.done) == (False, False, 40)


def test_a_failed_build_says_why_and_a_second_delivery_runs_nothing(world, monkeypatch):
    audience, _, _ = world
    VisitorTraitHit.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    Audience.objects.filter(pk=audience.pk).update(build_status=Audience.BuildStatus.QUEUED)

    lookalike_build_run(audience_id=audience.pk)
    audience.refresh_from_db()
    assert audience.build_status == Audience.BuildStatus.FAILED
    assert "no linked visitors with live category data" in audience.build_message

    monkeypatch.setattr("audiences.lookalike.lookalike_build", lambda **kw: 1 / 0)
    lookalike_build_run(audience_id=audience.pk)  # not queued: nothing runs, nothing changes
    audience.refresh_from_db()
    assert audience.build_status == Audience.BuildStatus.FAILED


def test_the_api_answers_202_and_the_audience_to_poll(world, api_client_with_scopes):
    audience, _, _ = world
    api = api_client_with_scopes("audiences:read", "audiences:write")

    response = api.post(f"/api/audiences/audiences/{audience.pk}/build/")

    assert response.status_code == 202, response.content
    assert response.json()["build_status"] == "queued"
    lookalike_build_run(audience_id=audience.pk)  # what the worker does
    polled = api.get(f"/api/audiences/audiences/{audience.pk}/").json()
    assert polled["build_status"] == "ready" and polled["size"] == 40
