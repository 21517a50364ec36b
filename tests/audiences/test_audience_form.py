"""An audience's form: the rule builder's vocabulary over visitors, the live count of a rule
and the estimate of a lookalike, a lookalike built on save, a quality verdict in words, and
only the fields of an audience's kind."""

from __future__ import annotations

import json

import pytest

from audiences.lookalike import lookalike_build, lookalike_estimate, lookalike_verdict
from audiences.models import Audience
from audiences.rules import VISITORS
from profiles.segments.builder import rule_vocabulary
from tests.audiences.test_lookalike import world  # noqa: F401 - the shared fixture
from tests.factories import AudienceFactory, CategoryFactory, DataProviderFactory

pytestmark = pytest.mark.django_db

PREVIEW = "/admin/audiences/audience/preview/"


def preview(client, payload):
    return client.post(PREVIEW, json.dumps(payload), content_type="application/json")


def test_every_visitor_leaf_is_offered_by_the_builder():
    CategoryFactory(code="IAB-239", name="Hiking")
    DataProviderFactory(name="Acme Data")

    leaves = rule_vocabulary(VISITORS)["leaves"]

    assert set(leaves) == set(VISITORS.leaves)
    assert ["IAB-239", "Hiking (IAB-239)"] in leaves["category"]["choices"]
    assert leaves["category"]["qualifiers"] == {"provider": [["Acme Data", "Acme Data"]]}
    assert leaves["category"]["window"] is True
    fields = {f["key"]: f for f in leaves["visitor"]["fields"]}
    assert {"country", "device_type", "browser", "key_kind"} <= set(fields)
    assert fields["last_seen_at"]["format"] == "date"
    assert leaves["event"]["shape"] == "event" and leaves["segment"]["shape"] == "choice"


def test_the_live_count_of_a_rule_and_its_errors(admin_client, world):  # noqa: F811
    counted = preview(admin_client, {"rule": {"category": "HIKE"}})
    refused = preview(admin_client, {"rule": {"category": "HIKE", "within_days": "a week"}})

    assert counted.status_code == 200 and counted.json()["count"] > 0
    assert refused.status_code == 400
    assert refused.json()["errors"] == ["category.within_days: expected whole days from 1 to 3660"]


def test_the_estimate_of_a_lookalike(admin_client, world):  # noqa: F811
    audience, _, _ = world

    answer = preview(
        admin_client,
        {"kind": "lookalike", "seed_segment": audience.seed_segment_id, "reach_percent": 20},
    ).json()

    assert (answer["seed_visitors"], answer["candidates"], answer["count"]) == (30, 200, 40)
    estimate = lookalike_estimate(seed_segment_id=audience.seed_segment_id, reach_percent=20)
    assert estimate.size == lookalike_build(audience=audience).size  # the build agrees


@pytest.mark.parametrize(
    "payload, error",
    [
        ({"kind": "lookalike", "seed_segment": 999999, "reach_percent": 20}, "seed segment"),
        ({"kind": "lookalike", "seed_segment": None, "reach_percent": 20}, "seed segment"),
        ({"kind": "lookalike", "seed_segment": 1, "reach_percent": 0}, "1 to 100"),
        ([1, 2], "JSON object"),
    ],
)
def test_a_bad_preview_request_is_refused_clearly(admin_client, world, payload, error):  # noqa: F811
    if payload and isinstance(payload, dict) and payload.get("seed_segment") == 1:
        payload["seed_segment"] = world[0].seed_segment_id

    response = preview(admin_client, payload)

    assert response.status_code == 400
    assert error in response.json()["errors"][0]


def test_a_lookalike_is_built_when_saved(admin_client, world, django_capture_on_commit_callbacks):  # noqa: F811
    seed = world[0].seed_segment

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/audiences/audience/add/",
            {
                "name": "Outdoor lookalike",
                "kind": "lookalike",
                "seed_segment": seed.pk,
                "reach_percent": 20,
                "rule": "{}",
                "syncs-TOTAL_FORMS": 0,
                "syncs-INITIAL_FORMS": 0,
            },
            follow=True,
        )

    audience = Audience.objects.get(name="Outdoor lookalike")
    assert audience.build_status == Audience.BuildStatus.READY, audience.build_message
    assert audience.size == 40
    assert "Good: it finds the seed's people" in audience.build_message
    assert "being built" in " ".join(str(m) for m in response.context["messages"])


def test_a_lookalike_without_a_seed_is_refused(admin_client):
    response = admin_client.post(
        "/admin/audiences/audience/add/",
        {"name": "No seed", "kind": "lookalike", "reach_percent": 20, "rule": "{}"},
    )

    assert "A lookalike needs the seed segment" in response.content.decode()
    assert not Audience.objects.filter(name="No seed").exists()


@pytest.mark.parametrize(
    "recall, reach, verdict",
    [
        (None, 10, "too small to judge"),
        (0.11, 10, "No better than random"),
        (0.12, 10, "No better than random"),
        (0.15, 10, "Somewhat better than random"),
        (0.25, 10, "Good"),
        (1.0, 60, "Good"),
        (0.7, 60, "No better than random"),
    ],
)
def test_the_quality_verdict_in_words(recall, reach, verdict):
    assert verdict in lookalike_verdict(recall, reach)


def test_an_audience_page_shows_the_fields_of_its_kind(admin_client, world):  # noqa: F811
    lookalike = world[0]
    rule = AudienceFactory(kind=Audience.Kind.RULE, rule={"category": "HIKE"})

    lookalike_fields = admin_client.get(f"/admin/audiences/audience/{lookalike.pk}/change/")
    rule_fields = admin_client.get(f"/admin/audiences/audience/{rule.pk}/change/")

    shown = set(lookalike_fields.context["adminform"].form.fields)
    assert "rule" not in shown and "seed_segment" in shown and "kind" not in shown
    shown = set(rule_fields.context["adminform"].form.fields)
    assert "seed_segment" not in shown and "rule" in shown
    assert 'id="rule-vocabulary"' in rule_fields.content.decode()
