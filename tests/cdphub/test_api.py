"""The API's shared parts (``cdphub.api``, ``cdphub.parsers``, ``cdphub.deletion``,
``cdphub.schema``): what every endpoint answers for input the database cannot take, deletes of
rows others still need, and what the schema documents."""

from __future__ import annotations

import base64
import re

import pytest
from django.db import connection
from django.db.models import CheckConstraint
from django.test.utils import CaptureQueriesContext
from rest_framework import mixins

from cdphub.api import ProtectedDestroyMixin
from cdphub.api_auth import SCOPES
from cdphub.pii import MASK
from cdphub.urls import router
from crm.models import Stage
from profiles.models import Profile, Source
from tests import factories

pytestmark = pytest.mark.django_db

NUL_MESSAGE = "NUL characters (\\u0000) are not allowed."


@pytest.fixture
def api(api_client_with_scopes):
    return api_client_with_scopes(*[scope for scope in SCOPES if scope != "pii:read"])


@pytest.fixture
def schema(client):
    return client.get("/api/schema/?format=json").json()


def assert_error(response, status: int, code: str, errors: dict | None = None) -> dict:
    body = response.json()
    assert response.status_code == status, body
    assert set(body) == {"code", "message", "errors"}
    assert body["code"] == code
    if errors is not None:
        assert body["errors"] == errors
    return body


# --- Protected deletes --------------------------------------------------------------------------


def test_deleting_a_source_with_events_is_a_409_counting_them_without_loading_them(api):
    # Given a source that three events came from
    source = factories.SourceFactory()
    factories.EventFactory.create_batch(3, source=source)

    # When it is deleted
    with CaptureQueriesContext(connection) as queries:
        response = api.delete(f"/api/sources/{source.pk}/")

    # Then the answer names and counts what refers to it, and no query read the events whole
    body = assert_error(response, 409, "conflict", {"events": ["3 events refer to it"]})
    assert body["message"] == f"source {source.pk} cannot be deleted: 3 events refer to it."
    event_reads = [q["sql"] for q in queries if 'FROM "profiles_event"' in q["sql"]]
    assert event_reads and all("LIMIT" in sql for sql in event_reads)
    assert Source.objects.filter(pk=source.pk).exists()


def test_deleting_a_pipeline_counts_the_deals_of_its_stages(api):
    deal = factories.DealFactory()
    factories.DealFactory(stage=deal.stage)

    response = api.delete(f"/api/crm/pipelines/{deal.pipeline_id}/")

    assert_error(response, 409, "conflict", {"deals": ["2 deals refer to it"]})


def test_deleting_a_stage_or_category_still_in_use_is_a_409(api):
    deal = factories.DealFactory()
    parent = factories.CategoryFactory()
    factories.CategoryFactory(parent=parent)
    factories.VisitorTraitHitFactory(category=parent)

    stage = api.delete(f"/api/crm/stages/{deal.stage_id}/")
    category = api.delete(f"/api/audiences/categories/{parent.pk}/")

    assert_error(stage, 409, "conflict", {"deals": ["1 deals refer to it"]})
    assert_error(category, 409, "conflict", {"categories": ["1 categories refer to it"]})


def test_a_source_is_created_inactive_when_asked(api):
    response = api.post("/api/sources/", {"name": "Shop", "is_active": False}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["is_active"] is False
    assert response.json()["write_key"].startswith("wk")


def test_a_row_nothing_needs_is_deleted(api):
    source = factories.SourceFactory()

    assert api.delete(f"/api/sources/{source.pk}/").status_code == 204
    assert not Source.objects.filter(pk=source.pk).exists()


def test_every_viewset_that_deletes_checks_for_protected_rows_first():
    deleting = [
        viewset.__name__
        for _, viewset, _ in router.registry
        if issubclass(viewset, mixins.DestroyModelMixin)
        and not issubclass(viewset, ProtectedDestroyMixin)
    ]
    assert deleting == []


# --- Date-time filters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/profiles/", "last_seen_at__gte"),
        ("/api/events/", "timestamp__lt"),
        ("/api/crm/contacts/", "updated_at__gte"),
        ("/api/crm/tasks/", "due_at__lte"),
        ("/api/audiences/visitors/", "last_seen_at__gte"),
        ("/api/consent/records/", "occurred_at__gte"),
        ("/api/rejected-messages/", "received_after"),
    ],
)
def test_a_date_time_filter_beyond_postgresqls_offsets_is_a_400(api, path, parameter):
    response = api.get(path, {parameter: "2026-01-01T00:00:00+16:00"})

    body = assert_error(response, 400, "invalid")
    assert body["errors"] == {parameter: ["The UTC offset must be between -15:59 and +15:59."]}


def test_a_date_time_filter_with_a_real_offset_filters(api):
    profile = factories.ProfileFactory()
    Profile.objects.filter(pk=profile.pk).update(last_seen_at="2026-01-01T12:00:00Z")

    response = api.get("/api/profiles/", {"last_seen_at__gte": "2026-01-02T01:00:00+14:00"})

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [profile.pk]


def test_list_filters_do_not_apply_to_a_detail_route_or_action(api):
    # Given two profiles, and a list filter that neither matches (nor PostgreSQL could compare)
    first, second = factories.ProfileFactory(), factories.ProfileFactory()
    query = "?last_seen_at__gte=2026-01-01T00:00:00%2B16:00&merged=true"

    # When a detail route and the merge action are called with it
    detail = api.get(f"/api/profiles/{first.pk}/{query}")
    merge = api.post(
        f"/api/profiles/{first.pk}/merge/{query}", {"profile_ids": [second.pk]}, format="json"
    )

    # Then they find their profile whatever the query string says
    assert detail.status_code == 200 and detail.json()["id"] == first.pk
    assert merge.status_code == 200, merge.json()
    assert isinstance(merge.json(), list) and len(merge.json()) == 1


# --- NUL characters -----------------------------------------------------------------------------


def test_nul_in_a_tag_list_item_is_a_400_naming_the_item(api):
    factories.TagFactory(name="vip")

    response = api.post(
        "/api/crm/companies/", {"name": "Acme", "tags": ["vip", "a\x00b"]}, format="json"
    )

    assert_error(response, 400, "invalid", {"tags[1]": [NUL_MESSAGE]})


def test_nul_in_a_category_code_and_in_a_rule_value_is_a_400(api):
    category = api.post(
        "/api/audiences/categories/",
        {"code": "X\x00", "name": "X", "kind": "interest", "parent_code": "\x00"},
        format="json",
    )
    rule = {"all": [{"trait": "country", "op": "eq", "value": "N\x00L"}]}
    segment = api.post("/api/segments/", {"name": "S", "rule": rule}, format="json")

    assert_error(category, 400, "invalid", {"code": [NUL_MESSAGE], "parent_code": [NUL_MESSAGE]})
    assert_error(segment, 400, "invalid", {"rule.all[0].value": [NUL_MESSAGE]})


def test_nul_in_a_form_field_is_a_400(api):
    response = api.post("/api/crm/tags/", {"name": "a\x00"}, format="multipart")

    assert_error(response, 400, "invalid", {"name": [NUL_MESSAGE]})


def test_nul_in_a_query_parameter_or_path_is_refused(api):
    query = api.get("/api/crm/tags/", {"name": "a\x00"})
    path = api.get("/api/crm/tags/%00/")

    assert_error(query, 400, "invalid", {"name": [NUL_MESSAGE]})
    assert_error(path, 404, "not_found")


def test_a_path_no_route_matches_is_a_json_404(api):
    assert_error(api.get("/api/crm/tags/1.5/"), 404, "not_found")


# --- Cursors ------------------------------------------------------------------------------------


def cursor(query: str) -> str:
    return base64.b64encode(query.encode()).decode()


@pytest.mark.parametrize(
    "position", ["abc", "\x00", "99999999999999999999999", "2026-13-45T99:00:00"]
)
def test_a_tampered_cursor_is_a_404(api, position):
    factories.TagFactory()

    tags = api.get("/api/crm/tags/", {"cursor": cursor(f"p={position}")})
    profiles = api.get(
        "/api/profiles/", {"cursor": cursor(f"p={position}"), "ordering": "last_seen_at"}
    )

    for response in (tags, profiles):
        body = assert_error(response, 404, "not_found")
        assert body["message"] == "Invalid cursor"


def test_a_real_cursor_pages_on(api):
    factories.TagFactory.create_batch(3)

    first = api.get("/api/crm/tags/", {"page_size": 2}).json()
    second = api.get(first["next"]).json()

    assert len(first["results"]) == 2 and len(second["results"]) == 1


# --- Model constraints --------------------------------------------------------------------------


def test_a_stage_probability_over_100_is_a_400(api):
    pipeline = factories.PipelineFactory()

    response = api.post(
        "/api/crm/stages/",
        {"pipeline": pipeline.pk, "name": "Won", "probability": 101},
        format="json",
    )

    assert_error(
        response,
        400,
        "invalid",
        {"probability": ["Ensure this value is less than or equal to 100."]},
    )
    assert not Stage.objects.exists()


def bounds(condition) -> list[tuple[str, str, object]]:
    """(field, "lte"/"gte", value) of a constraint made only of such comparisons."""
    found = []
    for child in condition.children:
        if not isinstance(child, tuple) or "__" not in child[0]:
            return []
        name, lookup = child[0].rsplit("__", 1)
        if lookup not in ("lte", "gte") or not isinstance(child[1], int):
            return []
        found.append((name, lookup, child[1]))
    return [] if condition.negated else found


def test_every_range_check_constraint_is_also_a_field_validator():
    from django.apps import apps

    missing = []
    for model in apps.get_models():
        for constraint in model._meta.constraints:
            if not isinstance(constraint, CheckConstraint):
                continue
            for name, lookup, value in bounds(constraint.condition):
                field = model._meta.get_field(name)
                kind = "MaxValueValidator" if lookup == "lte" else "MinValueValidator"
                if not any(
                    type(v).__name__ == kind and v.limit_value == value for v in field.validators
                ):
                    missing.append(f"{model._meta.label}.{name} {kind}({value})")
    assert missing == []


# --- The schema ---------------------------------------------------------------------------------


def test_actions_answering_lists_are_documented_as_lists(schema):
    paths = schema["paths"]
    for path, method, code in [
        ("/api/profiles/{id}/merge/", "post", "200"),
        ("/api/consent/records/object/", "post", "201"),
        ("/api/consent/records/tcf/", "post", "201"),
        ("/api/consent/requests/{id}/actions/", "get", "200"),
    ]:
        body = paths[path][method]["responses"][code]["content"]["application/json"]["schema"]
        assert body["type"] == "array", path
        assert not any(p["name"] == "cursor" for p in paths[path][method].get("parameters", []))


def test_error_codes_are_documented(schema):
    paths = schema["paths"]
    assert {"400", "401", "403", "404", "414"} <= set(paths["/api/crm/tags/"]["get"]["responses"])
    assert {"401", "403", "404", "409"} <= set(
        paths["/api/crm/stages/{id}/"]["delete"]["responses"]
    )
    assert {"400", "404"} <= set(paths["/api/consent/requests/{id}/process/"]["post"]["responses"])
    error = paths["/api/crm/stages/{id}/"]["delete"]["responses"]["409"]
    assert error["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_audience_build_answer_requires_only_the_size(schema, api):
    audience = factories.AudienceFactory(rule={"visitor": "country", "op": "eq", "value": "NL"})

    response = api.post(f"/api/audiences/audiences/{audience.pk}/build/")

    build = schema["paths"]["/api/audiences/audiences/{id}/build/"]["post"]["responses"]["200"]
    ref = build["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert schema["components"]["schemas"][ref]["required"] == ["size"]
    assert response.json() == {"size": 0}


def test_consent_record_fields_are_typed_as_returned(schema, api):
    # Given a record with no text version, IP address or form URL
    state = factories.consent_state_create(factories.ProfileFactory(), factories.PurposeFactory())
    record = state.record

    data = api.get(f"/api/consent/records/{record.pk}/").json()

    fields = schema["components"]["schemas"]["ConsentRecord"]["properties"]
    assert (data["text_version"], data["ip_address"], data["form_url"]) == (None, None, "")
    assert fields["text_version"]["nullable"] is True
    assert fields["ip_address"]["nullable"] is True
    assert "format" not in fields["form_url"]


def test_masked_values_match_their_documented_type(schema, api):
    contact = factories.ContactFactory(email="anna@example.com")

    data = api.get(f"/api/crm/contacts/{contact.pk}/").json()

    email = schema["components"]["schemas"]["Contact"]["properties"]["email"]
    assert data["email"] == f"a{MASK}@{MASK}"
    assert email["type"] == "string" and "format" not in email
    assert re.search("Masked", email["description"])
    request_email = schema["components"]["schemas"]["ContactRequest"]["properties"]["email"]
    assert "email" in str(request_email)  # what a client sends is still an e-mail address


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def test_every_operation_is_grouped_by_its_resource_and_summarised(schema):
    """The docs read as resources (CRM: contacts, Consent: requests, CDP: profiles), each
    operation with a line saying what it does."""
    tags = {}
    for path, method, operation in operations(schema):
        summary = operation.get("summary", "")
        assert summary and len(summary) <= 100, (method, path)
        assert " a a" not in summary and " a e" not in summary and " a i" not in summary
        (tag,) = operation["tags"]
        tags.setdefault(tag, []).append(path)
    assert "api" not in tags
    assert "/api/crm/contacts/" in tags["CRM: contacts"]
    assert "/api/consent/requests/{id}/verify/" in tags["Consent: requests"]
    assert "/api/audiences/audiences/" in tags["DMP: audiences"]
    assert "/api/profiles/{id}/" in tags["CDP: profiles"]
    assert "/v1/track" in tags["collection"]
    summaries = {
        (path, method): operation["summary"] for path, method, operation in operations(schema)
    }
    assert summaries[("/api/crm/contacts/", "get")] == "List contacts"
    assert summaries[("/api/audiences/audiences/{id}/", "get")] == "Get an audience"


def test_traits_and_properties_are_typed_as_the_spec_has_them(schema):
    """What to send is typed; answers name the same keys without promising their types (the
    hub keeps traits and properties as sources sent them)."""
    components = schema["components"]["schemas"]
    sent = components["ProfileRequest"]["properties"]["traits"]["properties"]
    assert sent["email"] == {"type": "string", "format": "email"}
    assert sent["address"]["properties"]["postalCode"] == {"type": "string"}
    answered = components["Profile"]["properties"]
    assert "type" not in answered["traits"]["properties"]["email"]
    assert "Usually a string (email)" in answered["traits"]["properties"]["email"]["description"]
    assert answered["computed_traits"]["properties"]["order_count"] == {"type": "integer"}
    assert answered["computed_traits"]["readOnly"] is True
    products = components["Event"]["properties"]["properties"]["properties"]["products"]
    assert products["description"] == "Usually an array."
    body = schema["paths"]["/v1/track"]["post"]["requestBody"]["content"]
    track = body["application/json"]["schema"]
    assert track["properties"]["properties"]["properties"]["revenue"] == {"type": "number"}
    assert body["text/plain"]["schema"] == track
    batch = schema["paths"]["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]
    messages = batch["schema"]["properties"]["batch"]["items"]["oneOf"]
    kinds = {message["properties"]["type"]["enum"][0] for message in messages}
    assert kinds == {"track", "identify", "page", "screen", "group", "alias"}
