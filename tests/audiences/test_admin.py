import pytest
from django.urls import reverse
from django.utils.timezone import now

from audiences.models import Audience, AudienceExport, AudienceMembership, ProviderFileImport
from tests.factories import (
    AudienceFactory,
    CategoryFactory,
    DataProviderFactory,
    VisitorFactory,
    VisitorTraitHitFactory,
)

pytestmark = pytest.mark.django_db

MODELS = [
    "visitor",
    "dataprovider",
    "category",
    "visitortraithit",
    "audience",
    "audiencemembership",
    "providerfileimport",
    "audienceexport",
]


@pytest.fixture
def many_rows(superuser):
    parent = CategoryFactory(code="INT")
    providers = [DataProviderFactory() for _ in range(3)]
    for number in range(30):
        category = CategoryFactory(code=f"INT-{number}", parent=parent, tier=2)
        visitor = VisitorFactory()
        VisitorTraitHitFactory(visitor=visitor, category=category, provider=providers[number % 3])
        audience = AudienceFactory(created_by=superuser)
        AudienceMembership.objects.create(audience=audience, visitor=visitor, entered_at=now())
        ProviderFileImport.objects.create(provider=providers[0], file="x.csv", created_by=superuser)
        AudienceExport.objects.create(destination="ids", audience=audience, created_by=superuser)


@pytest.mark.parametrize("model", MODELS)
def test_changelists_run_a_bounded_number_of_queries(
    model, admin_client, many_rows, django_assert_max_num_queries
):
    url = reverse(f"admin:audiences_{model}_changelist")
    with django_assert_max_num_queries(12):
        response = admin_client.get(url)
    assert response.status_code == 200


@pytest.mark.parametrize("model", MODELS)
def test_changelists_search(model, admin_client, many_rows):
    response = admin_client.get(reverse(f"admin:audiences_{model}_changelist"), {"q": "INT-3"})
    assert response.status_code == 200


def test_visitor_page_shows_its_hits(admin_client):
    hit = VisitorTraitHitFactory(category=CategoryFactory(code="INT-HIKE"))
    response = admin_client.get(reverse("admin:audiences_visitor_change", args=[hit.visitor_id]))
    assert response.status_code == 200
    assert "INT-HIKE" in response.content.decode()


def test_analyst_reads_but_cannot_add(client, user_with_role):
    client.force_login(user_with_role("Analyst"))
    assert client.get(reverse("admin:audiences_audience_changelist")).status_code == 200
    assert client.get(reverse("admin:audiences_audience_add")).status_code == 403


def test_sales_does_not_see_audiences(client, user_with_role):
    client.force_login(user_with_role("Sales"))
    assert client.get(reverse("admin:audiences_audience_changelist")).status_code == 403


# The page's inline of syncs to destinations, left empty.
no_syncs = {
    "syncs-TOTAL_FORMS": "0",
    "syncs-INITIAL_FORMS": "0",
    "syncs-MIN_NUM_FORMS": "0",
    "syncs-MAX_NUM_FORMS": "1000",
}


def test_lookalike_without_seed_is_a_form_error(admin_client):
    response = admin_client.post(
        reverse("admin:audiences_audience_add"),
        {"name": "Like buyers", "kind": "lookalike", "rule": "{}", "reach_percent": 5, **no_syncs},
    )
    assert response.status_code == 200  # the form again, with the error
    assert "seed" in str(response.context["adminform"].form.errors)
    assert not Audience.objects.exists()


def test_audience_created_in_admin_records_its_author(admin_client, superuser):
    response = admin_client.post(
        reverse("admin:audiences_audience_add"),
        {
            "name": "Hikers",
            "kind": "rule",
            "rule": '{"category": "INT"}',
            "reach_percent": 5,
            **no_syncs,
        },
    )
    assert response.status_code == 302
    assert Audience.objects.get(name="Hikers").created_by == superuser


def test_category_in_the_wrong_tier_is_a_form_error(admin_client):
    parent = CategoryFactory(code="INT", tier=1)
    response = admin_client.post(
        reverse("admin:audiences_category_add"),
        {"code": "INT-X", "name": "X", "kind": "interest", "parent": parent.pk, "tier": 5},
    )
    assert response.status_code == 200
    assert "tier 2, not 5" in response.content.decode()


def test_upload_page_creates_an_import_that_runs(admin_client, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.utils import timezone

    from audiences.models import ProviderFileImport

    provider = DataProviderFactory()
    CategoryFactory(code="INT-HIKE")
    content = (
        f"cookie_id,category,timestamp\nck-1,INT-HIKE,{timezone.now().isoformat()}\nck-2,BAD,x\n"
    )
    upload = SimpleUploadedFile("segment.csv", content.encode(), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:audiences_providerfileimport_add"),
            {"provider": provider.pk, "file": upload},
        )
    assert response.status_code == 302
    job = ProviderFileImport.objects.get()
    assert (job.status, job.imported_rows, job.error_rows) == ("done", 1, 1)
    page = admin_client.get(reverse("admin:audiences_providerfileimport_change", args=[job.pk]))
    assert "100% (2 of 2 rows)" in page.content.decode()
    assert "&#x27;BAD&#x27; is not in the taxonomy" in page.content.decode()


def test_upload_page_refuses_a_file_without_the_columns(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from audiences.models import ProviderFileImport

    upload = SimpleUploadedFile("segment.csv", b"who,what\n1,2\n", content_type="text/csv")
    response = admin_client.post(
        reverse("admin:audiences_providerfileimport_add"),
        {"provider": DataProviderFactory().pk, "file": upload},
    )
    assert response.status_code == 200
    assert "cookie_id or device_id" in response.content.decode()
    assert not ProviderFileImport.objects.exists()


def test_export_action_and_download(admin_client, settings):
    from audiences.models import AudienceExport
    from audiences.services import audience_members_set

    settings.CDPHUB_MIN_AUDIENCE_SIZE = 2
    audience = AudienceFactory()
    audience_members_set(audience=audience, visitor_ids=[VisitorFactory().pk for _ in range(2)])
    response = admin_client.post(
        reverse("admin:audiences_audience_changelist"),
        {"action": "export_ids", "_selected_action": [audience.pk]},
        follow=True,
    )
    assert "2 rows exported" in response.content.decode()
    export = AudienceExport.objects.get()
    changelist = admin_client.get(reverse("admin:audiences_audienceexport_changelist"))
    assert changelist.status_code == 200
    download = admin_client.get(
        reverse("admin:audiences_audienceexport_download", args=[export.pk])
    )
    assert download.status_code == 200
    assert b"".join(download.streaming_content).startswith(b"id,id_type")


def test_download_needs_permission(client, user_with_role, settings, tmp_path):
    from django.core.files.base import ContentFile

    from audiences.models import AudienceExport

    settings.MEDIA_ROOT = tmp_path
    export = AudienceExport.objects.create(destination="ids", status="done")
    export.file.save("x.csv", ContentFile(b"id,id_type\n"))
    url = reverse("admin:audiences_audienceexport_download", args=[export.pk])
    client.force_login(user_with_role("Sales"))  # no access to audiences
    assert client.get(url).status_code == 403
    client.force_login(user_with_role("Analyst"))  # sees exports, not personal data
    assert client.get(url).status_code == 403
    assert (
        "needs the personal data permission"
        in client.get(reverse("admin:audiences_audienceexport_changelist")).content.decode()
    )
    client.force_login(user_with_role("Marketer"))
    assert client.get(url).status_code == 200


def test_taxonomy_import_page(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from audiences.models import Category

    url = reverse("admin:audiences_category_import")
    assert admin_client.get(url).status_code == 200
    good = b"code,name,kind,parent_code,tier\nINT,Interest,interest,,1\nINT-A,A,interest,INT,2\n"
    response = admin_client.post(url, {"file": SimpleUploadedFile("t.csv", good)})
    assert response.status_code == 302
    assert Category.objects.get(code="INT-A").parent.code == "INT"


def test_taxonomy_import_page_lists_bad_rows(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from audiences.models import Category

    bad = b"code,name,kind,parent_code,tier\nINT,Interest,interest,,1\nINT-A,A,interest,INT,7\n"
    response = admin_client.post(
        reverse("admin:audiences_category_import"), {"file": SimpleUploadedFile("t.csv", bad)}
    )
    assert response.status_code == 200
    assert "tier 7 but parent INT is tier 1" in response.content.decode()
    assert not Category.objects.exists()


def test_taxonomy_import_page_needs_add_permission(client, user_with_role):
    client.force_login(user_with_role("Analyst"))
    assert client.get(reverse("admin:audiences_category_import")).status_code == 403


def test_export_page_exports_a_segment_for_meta(admin_client, settings):
    import hashlib

    from django.utils import timezone

    from audiences.models import AudienceExport
    from consent.models import ConsentRecord, ConsentState, Purpose
    from profiles.models import Segment, SegmentMembership
    from tests.factories import IdentityFactory, ProfileFactory

    settings.CDPHUB_MIN_AUDIENCE_SIZE = 2
    purpose = Purpose.objects.get_or_create(code="advertising", defaults={"name": "Advertising"})[0]
    segment = Segment.objects.create(name="Buyers", kind="static")
    for number in range(2):
        profile = ProfileFactory()
        IdentityFactory(profile=profile, kind="phone", value=f"+3161234567{number}")
        record = ConsentRecord.objects.create(
            profile=profile, purpose=purpose, status="granted", method="web_form"
        )
        ConsentState.objects.create(
            profile=profile,
            purpose=purpose,
            status="granted",
            record=record,
            updated_at=timezone.now(),
        )
        SegmentMembership.objects.create(
            segment=segment, profile=profile, entered_at=timezone.now()
        )
    url = reverse("admin:audiences_audienceexport_add")
    assert admin_client.get(url).status_code == 200

    response = admin_client.post(url, {"segment": segment.pk, "destination": "meta"}, follow=True)

    assert "2 rows exported" in response.content.decode()
    export = AudienceExport.objects.get()
    content = export.file.open("rb").read().decode()
    assert hashlib.sha256(b"31612345670").hexdigest() in content


def test_export_page_needs_one_source_and_reports_refusals(admin_client, settings):
    from audiences.models import AudienceExport
    from profiles.models import Segment

    settings.CDPHUB_MIN_AUDIENCE_SIZE = 100
    segment = Segment.objects.create(name="Tiny", kind="static")
    audience = AudienceFactory()
    url = reverse("admin:audiences_audienceexport_add")
    both = admin_client.post(
        url, {"segment": segment.pk, "audience": audience.pk, "destination": "google"}
    )
    assert "Choose either a segment or an audience" in both.content.decode()
    assert not AudienceExport.objects.exists()
    tiny = admin_client.post(url, {"segment": segment.pk, "destination": "google"})
    assert "below the minimum audience size of 100" in tiny.content.decode()
    assert AudienceExport.objects.get().status == "refused"


def test_export_page_needs_add_permission(client, user_with_role):
    client.force_login(user_with_role("Analyst"))
    assert client.get(reverse("admin:audiences_audienceexport_add")).status_code == 403
