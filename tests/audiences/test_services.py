import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from audiences.models import (
    AudienceMembership,
    Category,
    JobStatus,
    ProviderFileImport,
    Visitor,
    VisitorTraitHit,
)
from audiences.services import (
    Observation,
    ProviderFileError,
    TaxonomyImportError,
    audience_members_set,
    provider_file_import_create,
    provider_file_import_run,
    taxonomy_import,
    trait_hits_upsert,
    visitor_data_purge,
)
from audiences.tasks import provider_file_import_later
from tests.factories import (
    AudienceFactory,
    CategoryFactory,
    DataProviderFactory,
    VisitorFactory,
    VisitorTraitHitFactory,
)

pytestmark = pytest.mark.django_db

# --- taxonomy ------------------------------------------------------------------------------

TAXONOMY = """code,name,kind,parent_code,tier
INT-OUT-HIKE,Hiking,interest,INT-OUT,3
INT,Interest,interest,,1
INT-OUT,Outdoor,interest,INT,2
DEM,Demographic,demographic,,1
"""


def test_taxonomy_import_creates_the_tree_whatever_the_row_order():
    result = taxonomy_import(file=io.StringIO(TAXONOMY))
    assert (result.created, result.updated) == (4, 0)
    hike = Category.objects.get(code="INT-OUT-HIKE")
    assert (hike.parent.code, hike.parent.parent.code, hike.tier) == ("INT-OUT", "INT", 3)


def test_taxonomy_import_updates_by_code():
    taxonomy_import(file=io.StringIO(TAXONOMY))
    result = taxonomy_import(file=io.StringIO(TAXONOMY.replace("Hiking", "Hiking & trekking")))
    assert (result.created, result.updated) == (0, 4)
    assert Category.objects.get(code="INT-OUT-HIKE").name == "Hiking & trekking"
    assert Category.objects.count() == 4


def test_taxonomy_children_may_hang_under_known_categories():
    CategoryFactory(code="PI", kind="purchase_intent", tier=1)
    taxonomy_import(
        file=io.StringIO("code,name,kind,parent_code,tier\nPI-X,X,purchase_intent,PI,2\n")
    )
    assert Category.objects.get(code="PI-X").parent.code == "PI"


def test_bad_taxonomy_rows_are_listed_by_line_and_nothing_is_imported():
    bad = (
        "code,name,kind,parent_code,tier\n"
        "INT,Interest,interest,,1\n"  # line 2: fine
        ",Nameless,interest,,1\n"  # line 3: no code
        "INT-A,A,hobby,INT,2\n"  # line 4: unknown kind
        "INT-B,B,interest,INT,5\n"  # line 5: wrong tier
        "INT-C,C,interest,MISSING,2\n"  # line 6: unknown parent
        "INT,Again,interest,,1\n"  # line 7: duplicate code
        "INT-D,D,demographic,INT,2\n"  # line 8: kind differs from parent
        "INT-E,E,interest,INT,two\n"  # line 9: tier not a number
    )
    with pytest.raises(TaxonomyImportError) as refused:
        taxonomy_import(file=io.StringIO(bad))
    lines = {error.line: error.error for error in refused.value.errors}
    assert sorted(lines) == [3, 4, 5, 6, 7, 8, 9]
    assert "code is empty" in lines[3]
    assert "kind 'hobby'" in lines[4]
    assert "tier 5 but parent INT is tier 1" in lines[5]
    assert "'MISSING'" in lines[6]
    assert "already on line 2" in lines[7]
    assert "kind demographic but parent INT is interest" in lines[8]
    assert "tier 'two'" in lines[9]
    assert "line 3" in str(refused.value)
    assert not Category.objects.exists()


def test_taxonomy_without_required_columns_is_refused():
    with pytest.raises(TaxonomyImportError, match="missing column"):
        taxonomy_import(file=io.StringIO("code,title\nX,Y\n"))


# --- provider files ------------------------------------------------------------------------


@pytest.fixture
def provider():
    return DataProviderFactory(name="DataCo", retention_days=30)


@pytest.fixture
def categories():
    return {code: CategoryFactory(code=code) for code in ("INT-HIKE", "INT-RUN")}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def run_import(provider, text: str, batch_size: int = 5000) -> ProviderFileImport:
    job = ProviderFileImport.objects.create(
        provider=provider, file=ContentFile(text.encode(), name="segment.csv")
    )
    return provider_file_import_run(job_id=job.pk, batch_size=batch_size)


def test_provider_file_creates_visitors_and_hits_with_ttl(provider, categories):
    seen = (timezone.now() - timedelta(days=2)).replace(microsecond=0)
    text = (
        "cookie_id,category,timestamp\n"
        f"ck-1,INT-HIKE,{iso(seen)}\n"
        f"ck-1,INT-RUN,{iso(seen)}\n"
        f"ck-2,INT-HIKE,{int(seen.timestamp())}\n"
    )
    job = run_import(provider, text)
    assert (job.status, job.total_rows, job.processed_rows, job.imported_rows) == ("done", 3, 3, 3)
    assert job.error_rows == 0 and job.progress_percent == 100
    hit = VisitorTraitHit.objects.get(visitor__key="ck-1", category__code="INT-HIKE")
    assert hit.expires_at == hit.observed_at + timedelta(days=30)
    assert Visitor.objects.get(key="ck-2").expires_at == seen + timedelta(days=30)


def test_bad_rows_are_reported_by_line_and_good_rows_kept(provider, categories):
    now = timezone.now()
    text = (
        "cookie_id,category,timestamp\n"
        f"ck-1,INT-HIKE,{iso(now)}\n"  # 2 ok
        f"ck-2,NOPE,{iso(now)}\n"  # 3 unknown category
        "ck-3,INT-HIKE,yesterday\n"  # 4 bad timestamp
        f"undefined,INT-HIKE,{iso(now)}\n"  # 5 junk cookie id
        f"ck-5,INT-HIKE,{iso(now - timedelta(days=31))}\n"  # 6 expired on arrival
        f"ck-6,INT-HIKE,{iso(now + timedelta(days=5))}\n"  # 7 in the future
        f"ck-7,INT-RUN,{iso(now)}\n"  # 8 ok
    )
    job = run_import(provider, text, batch_size=2)
    assert job.status == JobStatus.DONE
    assert (job.imported_rows, job.error_rows, job.processed_rows) == (2, 5, 7)
    lines = {e["line"]: e["error"] for e in job.errors}
    assert sorted(lines) == [3, 4, 5, 6, 7]
    assert "'NOPE' is not in the taxonomy" in lines[3]
    assert "'yesterday'" in lines[4]
    assert "placeholder" in lines[5]
    assert "expire on arrival" in lines[6]
    assert "future" in lines[7]
    assert set(Visitor.objects.values_list("key", flat=True)) == {"ck-1", "ck-7"}


def test_re_observation_slides_the_ttl_and_older_data_never_shortens_it(provider, categories):
    early = timezone.now() - timedelta(days=10)
    late = timezone.now() - timedelta(days=1)
    run_import(provider, f"cookie_id,category,timestamp\nck-1,INT-HIKE,{iso(early)}\n")
    run_import(provider, f"cookie_id,category,timestamp\nck-1,INT-HIKE,{iso(late)}\n")
    hit = VisitorTraitHit.objects.get()
    assert hit.observed_at == late
    assert hit.expires_at == late + timedelta(days=30)

    run_import(provider, f"cookie_id,category,timestamp\nck-1,INT-HIKE,{iso(early)}\n")
    hit.refresh_from_db()
    assert hit.expires_at == late + timedelta(days=30)
    visitor = Visitor.objects.get()
    assert (visitor.first_seen_at, visitor.last_seen_at) == (early, late)


def test_reimporting_the_same_file_adds_nothing(provider, categories):
    text = f"device_id,category,timestamp\ndev-1,INT-HIKE,{iso(timezone.now())}\n" * 3
    run_import(provider, text)
    run_import(provider, text)
    assert Visitor.objects.filter(key_kind="device").count() == 1
    assert VisitorTraitHit.objects.count() == 1


def test_upload_with_wrong_header_is_refused_at_once(provider):
    with pytest.raises(ProviderFileError, match="cookie_id or device_id"):
        provider_file_import_create(
            provider=provider, file=ContentFile(b"id,segment,when\n1,2,3\n", name="x.csv")
        )
    assert not ProviderFileImport.objects.exists()


def test_an_upload_is_imported_in_the_background(
    provider, categories, django_capture_on_commit_callbacks
):
    text = f"cookie_id,category,timestamp\nck-1,INT-HIKE,{iso(timezone.now())}\n"
    with django_capture_on_commit_callbacks(execute=True):
        job = provider_file_import_create(
            provider=provider, file=ContentFile(text.encode(), "f.csv")
        )
        provider_file_import_later(job)
    job.refresh_from_db()
    assert job.status == JobStatus.DONE
    assert job.imported_rows == 1


def test_a_job_runs_only_once(provider, categories):
    job = run_import(
        provider, f"cookie_id,category,timestamp\nck-1,INT-HIKE,{iso(timezone.now())}\n"
    )
    assert provider_file_import_run(job_id=job.pk) is None


def test_unreadable_file_fails_the_job_with_a_message(provider):
    job = ProviderFileImport.objects.create(provider=provider, file="provider_imports/missing.csv")
    job = provider_file_import_run(job_id=job.pk)
    assert job.status == JobStatus.FAILED
    assert job.message


def test_trait_hits_upsert_handles_duplicates_in_one_batch(provider, categories):
    now = timezone.now()
    category = categories["INT-HIKE"].pk
    applied = trait_hits_upsert(
        provider=provider,
        observations=[
            Observation("cookie", "ck-1", category, now - timedelta(hours=2)),
            Observation("cookie", "ck-1", category, now),
        ],
    )
    assert applied == 2
    assert VisitorTraitHit.objects.get().observed_at == now


# --- membership and retention --------------------------------------------------------------


def test_audience_members_set_replaces_members():
    audience = AudienceFactory()
    first, second, third = VisitorFactory(), VisitorFactory(), VisitorFactory()
    audience_members_set(audience=audience, visitor_ids=[first.pk, second.pk])
    audience_members_set(audience=audience, visitor_ids=[second.pk, third.pk])
    members = set(AudienceMembership.objects.values_list("visitor_id", flat=True))
    assert members == {second.pk, third.pk}
    audience.refresh_from_db()
    assert audience.size == 2


def test_purge_deletes_expired_hits_and_visitors_in_batches():
    now = timezone.now()
    past, future = now - timedelta(seconds=1), now + timedelta(days=1)
    kept_visitor = VisitorFactory(expires_at=future)
    expired_visitor = VisitorFactory(expires_at=past)
    for _ in range(5):
        VisitorTraitHitFactory(visitor=kept_visitor, expires_at=past)
    kept_hit = VisitorTraitHitFactory(visitor=kept_visitor, expires_at=future)
    VisitorTraitHitFactory(visitor=expired_visitor, expires_at=future)
    audience_members_set(audience=AudienceFactory(), visitor_ids=[expired_visitor.pk])

    purged = visitor_data_purge(now=now, batch_size=2)

    # Every hit deleted: the 5 expired, and the one of the expired visitor.
    assert purged == {"trait_hits": 6, "visitors": 1}
    assert list(VisitorTraitHit.objects.all()) == [kept_hit]
    assert list(Visitor.objects.all()) == [kept_visitor]
    assert not AudienceMembership.objects.exists()
    assert visitor_data_purge(now=now, batch_size=2) == {"trait_hits": 0, "visitors": 0}


def test_rows_with_extra_fields_are_bad_rows(provider, categories):
    now = iso(timezone.now())
    text = f"cookie_id,category,timestamp\nck-1,INT-HIKE,{now},surprise\nck-2,INT-HIKE,{now}\n"
    job = run_import(provider, text)
    assert (job.imported_rows, job.error_rows) == (1, 1)
    assert job.errors == [{"line": 2, "error": "1 more field(s) than the header"}]


def test_a_file_that_is_not_utf8_fails_after_keeping_the_good_batches(provider, categories):
    good = "".join(f"ck-{n},INT-HIKE,{iso(timezone.now())}\n" for n in range(4))
    content = ("cookie_id,category,timestamp\n" + good).encode() + b"ck-x,INT-HIKE,\xff\xfe\n"
    job = ProviderFileImport.objects.create(
        provider=provider, file=ContentFile(content, name="latin1.csv")
    )
    job = provider_file_import_run(job_id=job.pk, batch_size=2)
    assert job.status == JobStatus.FAILED
    assert job.message == "line 6: the file is not UTF-8 text"
    assert Visitor.objects.count() == 4


def test_taxonomy_not_utf8_is_a_row_error():
    content = "code,name,kind\nINT,Intérêt,interest\n".encode("latin-1")
    with pytest.raises(TaxonomyImportError, match="not UTF-8"):
        taxonomy_import(file=io.BytesIO(content))


def test_taxonomy_extra_fields_are_reported():
    with pytest.raises(TaxonomyImportError, match="line 2: 2 more field"):
        taxonomy_import(file=io.StringIO("code,name,kind\nINT,Interest,interest,x,y\n"))


def test_taxonomy_from_excel_utf8_with_bom():
    content = "\ufeffcode,name,kind\nINT,Intérêt,interest\n".encode()
    taxonomy_import(file=io.BytesIO(content))
    assert Category.objects.get(code="INT").name == "Intérêt"
