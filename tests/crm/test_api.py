import pytest

from crm.models import Activity, Contact, Deal, Task, Ticket
from profiles.models import Identity
from tests import factories

pytestmark = pytest.mark.django_db


def payloads():
    """endpoint -> (factory making an existing row, builder of a valid create payload,
    a bad payload and the field its error must name)."""
    return {
        "tags": (factories.TagFactory, lambda: {"name": "vip"}, {"name": ""}, "name"),
        "companies": (
            factories.CompanyFactory,
            lambda: {"name": "Acme", "domain": "https://www.Acme.example/"},
            {"name": "Acme", "size": "huge"},
            "size",
        ),
        "contacts": (
            factories.ContactFactory,
            lambda: {"first_name": "Sam", "email": " Sam@Example.COM ", "phone": "06 12345678"},
            {"first_name": "Sam", "email": "not-an-email"},
            "email",
        ),
        "pipelines": (factories.PipelineFactory, lambda: {"name": "Sales"}, {}, "name"),
        "stages": (
            factories.StageFactory,
            lambda: {"pipeline": factories.PipelineFactory().pk, "name": "Won", "is_won": True},
            {"pipeline": 1, "name": "Odd", "is_won": True, "is_lost": True},
            "is_lost",
        ),
        "deals": (
            factories.DealFactory,
            lambda: {"name": "Big one", "stage": factories.StageFactory().pk, "amount": "10.00"},
            {"name": "Too sure", "stage": 1, "probability": 150},
            "probability",
        ),
        "activities": (
            factories.ActivityFactory,
            lambda: {"kind": "note", "subject": "Hi", "contact": factories.ContactFactory().pk},
            {"kind": "note", "subject": "Orphan"},
            "non_field_errors",
        ),
        "tickets": (
            factories.TicketFactory,
            lambda: {"subject": "Broken", "priority": "urgent"},
            {"subject": "Broken", "priority": "whenever"},
            "priority",
        ),
        "tasks": (
            factories.TaskFactory,
            lambda: {"title": "Call back", "contact": factories.ContactFactory().pk},
            {"title": "Call back", "due_at": "next tuesday"},
            "due_at",
        ),
    }


ENDPOINTS = list(payloads())


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_list_and_detail_with_read_scope(endpoint, api_client_with_scopes):
    make, *_ = payloads()[endpoint]
    row = make()
    client = api_client_with_scopes("crm:read")

    listing = client.get(f"/api/crm/{endpoint}/")
    detail = client.get(f"/api/crm/{endpoint}/{row.pk}/")

    assert listing.status_code == 200
    assert [item["id"] for item in listing.json()["results"]] == [row.pk]
    assert detail.status_code == 200
    assert detail.json()["id"] == row.pk


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_create_with_write_scope(endpoint, api_client_with_scopes):
    _, payload, *_ = payloads()[endpoint]
    client = api_client_with_scopes("crm:write", "crm:read", "pii:read")

    response = client.post(f"/api/crm/{endpoint}/", payload(), format="json")

    assert response.status_code == 201, response.json()
    assert client.get(f"/api/crm/{endpoint}/{response.json()['id']}/").status_code == 200


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_without_key_is_401(endpoint, client):
    assert client.get(f"/api/crm/{endpoint}/").status_code == 401


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_wrong_scope_is_403(endpoint, api_client_with_scopes):
    _, payload, *_ = payloads()[endpoint]
    reader = api_client_with_scopes("crm:read")
    outsider = api_client_with_scopes("profiles:read", "profiles:write")

    assert outsider.get(f"/api/crm/{endpoint}/").status_code == 403
    assert reader.post(f"/api/crm/{endpoint}/", payload(), format="json").status_code == 403


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_bad_input_names_the_field(endpoint, api_client_with_scopes):
    factories.StageFactory(pk=1, pipeline=factories.PipelineFactory(pk=1))
    _, _, bad, field = payloads()[endpoint]
    client = api_client_with_scopes("crm:write")

    response = client.post(f"/api/crm/{endpoint}/", bad, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["errors"], body


def test_contact_create_normalises_and_links_profile(api_client_with_scopes):
    client = api_client_with_scopes("crm:write", "crm:read", "pii:read")

    response = client.post(
        "/api/crm/contacts/",
        {"first_name": "Sam", "email": " Sam@Example.COM ", "phone": "06 12345678"},
        format="json",
    )

    body = response.json()
    assert body["email"] == "sam@example.com"
    assert body["phone"] == "+31612345678"
    contact = Contact.objects.get(pk=body["id"])
    assert body["profile"] == contact.profile_id is not None
    assert Identity.objects.get(kind="crm_contact", value=str(contact.pk)).profile_id == (
        contact.profile_id
    )


def test_contacts_without_an_external_id_do_not_collide(api_client_with_scopes):
    client = api_client_with_scopes("crm:read", "crm:write")

    first = client.post("/api/crm/contacts/", {"external_id": ""}, format="json")
    second = client.post("/api/crm/contacts/", {"external_id": ""}, format="json")

    assert (first.status_code, second.status_code) == (201, 201), second.json()
    assert first.json()["external_id"] is second.json()["external_id"] is None


def test_contact_update_flows_into_profile_traits(api_client_with_scopes):
    client = api_client_with_scopes("crm:write", "crm:read", "pii:read")
    created = client.post(
        "/api/crm/contacts/", {"first_name": "Sam", "email": "sam@example.com"}, format="json"
    ).json()

    client.patch(
        f"/api/crm/contacts/{created['id']}/",
        {"job_title": "CFO", "last_name": "Li"},
        format="json",
    )

    profile = Contact.objects.get(pk=created["id"]).profile
    assert profile.traits["jobTitle"] == "CFO"
    assert profile.traits["lastName"] == "Li"
    assert profile.traits["email"] == "sam@example.com"


def test_contact_pii_masked_without_pii_scope(api_client_with_scopes):
    contact = factories.ContactFactory(email="hidden@example.com", first_name="Hidden")

    masked = api_client_with_scopes("crm:read").get(f"/api/crm/contacts/{contact.pk}/").json()
    clear = api_client_with_scopes("crm:read", "pii:read").get(f"/api/crm/contacts/{contact.pk}/")

    assert "hidden@example.com" not in str(masked)
    assert masked["email"].startswith("h•••@")
    assert masked["first_name"] == "H•••"
    assert clear.json()["email"] == "hidden@example.com"


def test_contact_pii_masked_for_session_user_without_pii(client, user_with_role):
    contact = factories.ContactFactory(email="hidden@example.com")
    client.force_login(user_with_role("Analyst"))

    response = client.get(f"/api/crm/contacts/{contact.pk}/")

    assert response.status_code == 200
    assert "hidden@example.com" not in response.content.decode()


def test_deal_in_won_stage_is_won_and_closed(api_client_with_scopes):
    won = factories.StageFactory(is_won=True, probability=100)
    client = api_client_with_scopes("crm:write")

    body = client.post(
        "/api/crm/deals/", {"name": "Signed", "stage": won.pk, "amount": "5"}, format="json"
    ).json()

    deal = Deal.objects.get(pk=body["id"])
    assert (deal.status, deal.probability, deal.pipeline_id) == ("won", 100, won.pipeline_id)
    assert deal.closed_at is not None


def test_deal_stage_of_another_pipeline_is_refused(api_client_with_scopes):
    stage = factories.StageFactory()
    other = factories.PipelineFactory()
    client = api_client_with_scopes("crm:write")

    response = client.post(
        "/api/crm/deals/", {"name": "X", "stage": stage.pk, "pipeline": other.pk}, format="json"
    )

    assert response.status_code == 400
    assert "stage" in response.json()["errors"]
    assert not Deal.objects.exists()


def test_contact_filters(api_client_with_scopes):
    tagged = factories.ContactFactory(lifecycle_stage="customer")
    tagged.tags.add(factories.TagFactory(name="vip"))
    factories.ContactFactory(lifecycle_stage="lead")
    client = api_client_with_scopes("crm:read")

    by_stage = client.get("/api/crm/contacts/", {"lifecycle_stage": "customer"}).json()
    by_tag = client.get("/api/crm/contacts/", {"tag": "vip"}).json()

    assert [c["id"] for c in by_stage["results"]] == [tagged.pk]
    assert [c["id"] for c in by_tag["results"]] == [tagged.pk]


def test_erased_person_cannot_be_recreated_through_the_api(api_client_with_scopes):
    from tests.crm.test_services import suppress

    suppress("email", "erased@example.com")
    client = api_client_with_scopes("crm:write")

    response = client.post("/api/crm/contacts/", {"email": "Erased@example.com"}, format="json")

    assert response.status_code == 400
    assert "suppression list" in response.json()["message"]
    assert not Contact.objects.exists()


# --- Sales team visibility ------------------------------------------------------------------

TEAM_NORTH_SEES = {"me", "mate", "lead", "nobody"}


def test_session_user_lists_only_visible_records(client, sales_org):
    client.force_login(sales_org.me)

    listing = client.get("/api/crm/contacts/")

    assert listing.status_code == 200
    assert {row["last_name"] for row in listing.json()["results"]} == TEAM_NORTH_SEES


def test_detail_of_an_invisible_record_is_404(client, sales_org):
    client.force_login(sales_org.me)
    rival_deal = factories.DealFactory(owner=sales_org.rival)
    my_deal = factories.DealFactory(owner=sales_org.me)

    hidden = client.get(f"/api/crm/contacts/{sales_org.contacts['rival'].pk}/")

    assert hidden.status_code == 404
    assert hidden.json()["code"] == "not_found"
    assert client.get(f"/api/crm/deals/{rival_deal.pk}/").status_code == 404
    assert client.get(f"/api/crm/deals/{my_deal.pk}/").status_code == 200


def test_changing_an_invisible_record_is_404(client, sales_org):
    client.force_login(sales_org.me)
    rival = sales_org.contacts["rival"]

    response = client.patch(
        f"/api/crm/contacts/{rival.pk}/", {"last_name": "Taken"}, content_type="application/json"
    )

    assert response.status_code == 404
    rival.refresh_from_db()
    assert rival.last_name == "rival"


def test_filtering_on_another_teams_owner_finds_nothing(client, sales_org):
    client.force_login(sales_org.me)

    listing = client.get("/api/crm/contacts/", {"owner": sales_org.rival.pk})

    assert listing.status_code == 200
    assert listing.json()["results"] == []


def test_activities_in_the_api_follow_their_contact(client, sales_org):
    ours = factories.ActivityFactory(contact=sales_org.contacts["mate"])
    factories.ActivityFactory(contact=sales_org.contacts["rival"])
    client.force_login(sales_org.me)

    listing = client.get("/api/crm/activities/")

    assert [row["id"] for row in listing.json()["results"]] == [ours.pk]


def test_api_key_sees_every_record_whatever_the_teams(api_client_with_scopes, sales_org):
    listing = api_client_with_scopes("crm:read").get("/api/crm/contacts/")

    assert {row["id"] for row in listing.json()["results"]} == {
        contact.pk for contact in sales_org.contacts.values()
    }


# --- Links to records out of sight ------------------------------------------------------------


def missing_pk_error(pk) -> list[str]:
    return [f'Invalid pk "{pk}" - object does not exist.']


def links(sales_org) -> dict:
    """A contact, deal and company of rival's team (hidden from me) by field name."""
    contact = sales_org.contacts["rival"]
    deal = factories.DealFactory(owner=sales_org.rival, company=contact.company, contact=contact)
    return {"contact": contact, "company": contact.company, "deal": deal}


@pytest.mark.parametrize(
    ("endpoint", "payload", "field"),
    [
        ("deals", {"name": "Poached"}, "contact"),
        ("deals", {"name": "Poached"}, "company"),
        ("activities", {"kind": "note", "subject": "Poached"}, "contact"),
        ("activities", {"kind": "note", "subject": "Poached"}, "deal"),
        ("activities", {"kind": "note", "subject": "Poached"}, "company"),
        ("tickets", {"subject": "Poached"}, "contact"),
        ("tickets", {"subject": "Poached"}, "company"),
        ("tasks", {"title": "Poached"}, "contact"),
        ("tasks", {"title": "Poached"}, "deal"),
    ],
)
def test_a_link_to_a_hidden_record_is_refused_like_a_missing_one(
    client, sales_org, endpoint, payload, field
):
    hidden = links(sales_org)[field]
    if endpoint == "deals":
        payload = {**payload, "stage": factories.StageFactory().pk}
    client.force_login(sales_org.me)

    def post(pk):
        return client.post(
            f"/api/crm/{endpoint}/", {**payload, field: pk}, content_type="application/json"
        )

    refused, missing = post(hidden.pk), post(987654)

    assert refused.status_code == 400
    assert refused.json()["errors"] == {field: missing_pk_error(hidden.pk)}
    assert missing.json()["errors"] == {field: missing_pk_error(987654)}
    created = {"deals": Deal, "activities": Activity, "tickets": Ticket, "tasks": Task}[endpoint]
    assert not created.objects.filter(**payload).exists()


def test_a_link_to_a_visible_record_is_accepted(client, sales_org):
    mate = sales_org.contacts["mate"]
    client.force_login(sales_org.me)

    response = client.post(
        "/api/crm/deals/",
        {"name": "Ours", "stage": factories.StageFactory().pk, "contact": mate.pk},
        content_type="application/json",
    )

    assert response.status_code == 201, response.json()
    assert Deal.objects.get(name="Ours").contact == mate


def test_moving_a_deal_to_a_hidden_contact_is_refused(client, sales_org):
    deal = factories.DealFactory(owner=sales_org.me, contact=sales_org.contacts["me"])
    hidden = sales_org.contacts["rival"]
    client.force_login(sales_org.me)

    response = client.patch(
        f"/api/crm/deals/{deal.pk}/", {"contact": hidden.pk}, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {"contact": missing_pk_error(hidden.pk)}
    deal.refresh_from_db()
    assert deal.contact == sales_org.contacts["me"]


def test_a_deal_keeps_the_hidden_contact_it_already_has(client, sales_org):
    # Given my deal linked to a contact that has since moved to rival's team
    hidden = sales_org.contacts["rival"]
    deal = factories.DealFactory(owner=sales_org.me, contact=hidden)
    client.force_login(sales_org.me)
    shown = client.get(f"/api/crm/deals/{deal.pk}/").json()

    # When the client sends back what it read, with one change
    response = client.put(
        f"/api/crm/deals/{deal.pk}/",
        {**shown, "name": "Renamed"},
        content_type="application/json",
    )

    assert response.status_code == 200, response.json()
    deal.refresh_from_db()
    assert (deal.name, deal.contact) == ("Renamed", hidden)


def test_api_key_links_records_of_every_team(api_client_with_scopes, sales_org):
    hidden = sales_org.contacts["rival"]
    client = api_client_with_scopes("crm:write", "crm:read")

    response = client.post(
        "/api/crm/deals/",
        {"name": "Integration", "stage": factories.StageFactory().pk, "contact": hidden.pk},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert Deal.objects.get(name="Integration").contact == hidden
