import csv
import hashlib

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audiences.models import AudienceExport, JobStatus
from audiences.selectors import audience_visitors, profiles_allowed_for_advertising
from audiences.services import ExportError, audience_export, audience_members_set
from consent.models import ConsentRecord, ConsentState, Purpose
from profiles.models import Profile, Segment, SegmentMembership
from tests.factories import AudienceFactory, IdentityFactory, ProfileFactory, VisitorFactory

pytestmark = pytest.mark.django_db


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(autouse=True)
def small_minimum(settings):
    settings.CDPHUB_MIN_AUDIENCE_SIZE = 3


@pytest.fixture
def advertising():
    return Purpose.objects.get_or_create(code="advertising", defaults={"name": "Advertising"})[0]


def consent_set(profile, purpose, status):
    record = ConsentRecord.objects.create(
        profile=profile, purpose=purpose, status=status, method="web_form"
    )
    ConsentState.objects.update_or_create(
        profile=profile,
        purpose=purpose,
        defaults={"status": status, "record": record, "updated_at": timezone.now()},
    )


def person(number: int, purpose, status="granted", phone=True):
    profile = ProfileFactory()
    IdentityFactory(profile=profile, kind="email", value=f"person{number}@example.com")
    if phone:
        IdentityFactory(profile=profile, kind="phone", value=f"+3161234{number:04d}")
    IdentityFactory(profile=profile, kind="anonymous_id", value=f"anon-{number}")
    if status:
        consent_set(profile, purpose, status)
    return profile


@pytest.fixture
def segment(advertising):
    segment = Segment.objects.create(name="Loyal", kind="static")
    people = [person(n, advertising) for n in range(4)]
    people.append(person(10, advertising, status="withdrawn"))
    people.append(person(11, advertising, status=None))
    for profile in people:
        SegmentMembership.objects.create(
            segment=segment, profile=profile, entered_at=timezone.now()
        )
    return segment


def read_csv(job: AudienceExport) -> list[list[str]]:
    with job.file.open("r") as file:
        return list(csv.reader(file))


def test_selector_keeps_only_granted_advertising(segment, advertising):
    allowed = profiles_allowed_for_advertising(Profile.objects.all())
    assert allowed.count() == 4


def test_google_export_hashes_with_google_rules(segment):
    job = audience_export(destination="google", profiles=Profile.objects.all(), segment=segment)
    rows = read_csv(job)
    assert job.status == JobStatus.DONE and job.row_count == 4
    assert rows[0] == ["Email", "Phone", "Mobile Device ID"]
    assert rows[1] == [
        sha("person0@example.com"),
        sha("+31612340000"),
        "",
    ]
    exported = {row[0] for row in rows[1:]}
    assert sha("person10@example.com") not in exported  # withdrawn
    assert sha("person11@example.com") not in exported  # never asked


def test_meta_export_uses_digits_only_phones(segment):
    job = audience_export(destination="meta", profiles=list(Profile.objects.all()))
    rows = read_csv(job)
    assert rows[0] == ["email", "phone", "madid"]
    assert [sha("person0@example.com"), sha("31612340000"), ""] in rows[1:]


def test_export_below_minimum_is_refused_and_recorded(segment, settings):
    settings.CDPHUB_MIN_AUDIENCE_SIZE = 5
    job = audience_export(destination="google", profiles=Profile.objects.all())
    assert job.status == JobStatus.REFUSED
    assert "below the minimum audience size of 5" in job.message
    assert not job.file
    assert AudienceExport.objects.filter(status="refused").count() == 1


def test_export_needs_profiles_or_visitors():
    with pytest.raises(ExportError):
        audience_export(destination="google")
    with pytest.raises(ExportError, match="destination"):
        audience_export(destination="tiktok", profiles=[])


def test_audience_ids_export_lists_member_keys():
    audience = AudienceFactory()
    visitors = [VisitorFactory(key=f"ck-{n}") for n in range(3)] + [
        VisitorFactory(key="dev-1", key_kind="device")
    ]
    VisitorFactory(key="not-a-member")
    audience_members_set(audience=audience, visitor_ids=[v.pk for v in visitors])
    job = audience_export(
        destination="ids", visitors=audience_visitors(audience.pk), audience=audience
    )
    rows = read_csv(job)
    assert rows[0] == ["id", "id_type"]
    assert sorted(rows[1:]) == [
        ["ck-0", "cookie"],
        ["ck-1", "cookie"],
        ["ck-2", "cookie"],
        ["dev-1", "device"],
    ]


def test_audience_google_export_uses_consenting_linked_profiles_and_devices(segment, advertising):
    audience = AudienceFactory()
    allowed = list(profiles_allowed_for_advertising(Profile.objects.all())[:2])
    refused = Profile.objects.get(identities__value="person10@example.com")
    members = [VisitorFactory(profile=p) for p in [*allowed, refused]]
    members.append(VisitorFactory(key="maid-1", key_kind="device"))
    audience_members_set(audience=audience, visitor_ids=[v.pk for v in members])
    job = audience_export(destination="google", visitors=audience_visitors(audience.pk))
    rows = read_csv(job)[1:]
    assert job.row_count == 3
    assert ["", "", "maid-1"] in rows
    assert sha("person10@example.com") not in {row[0] for row in rows}


def test_export_command_writes_the_file(segment, tmp_path):
    out = tmp_path / "google.csv"
    call_command(
        "export", "--segment", str(segment.pk), "--destination", "google", "--out", str(out)
    )
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["Email", "Phone", "Mobile Device ID"]
    assert len(rows) == 5
    assert AudienceExport.objects.get().segment == segment


def test_export_command_refuses_small_audiences(segment, tmp_path, settings):
    settings.CDPHUB_MIN_AUDIENCE_SIZE = 100
    out = tmp_path / "x.csv"
    with pytest.raises(CommandError, match="refused"):
        call_command(
            "export", "--segment", str(segment.pk), "--destination", "meta", "--out", str(out)
        )
    assert not out.exists()


def test_export_command_unknown_ids(tmp_path):
    with pytest.raises(CommandError, match="no audience with id 999"):
        call_command(
            "export", "--audience", "999", "--destination", "ids", "--out", str(tmp_path / "x")
        )
    with pytest.raises(CommandError):
        call_command("export", "--destination", "ids", "--out", str(tmp_path / "x"))


def test_minimum_size_counts_people_not_rows(advertising, settings):
    # Given 2 consenting people with a cookie and a device each: 4 rows, 2 people
    settings.CDPHUB_MIN_AUDIENCE_SIZE = 3
    for number in range(2):
        profile = person(number, advertising)
        IdentityFactory(profile=profile, kind="device_id", value=f"dev-{number}")

    job = audience_export(destination="ids", profiles=Profile.objects.all())

    assert job.status == JobStatus.REFUSED
    assert job.row_count == 4
    assert job.message.startswith("2 people or devices")


def test_audience_ids_leave_out_people_without_advertising_consent(advertising):
    audience = AudienceFactory()
    granted = person(1, advertising)
    withdrawn = person(2, advertising, status="withdrawn")
    members = [VisitorFactory(key="ck-a"), VisitorFactory(key="ck-b")]
    members += [VisitorFactory(key="linked-ok", profile=granted)]
    members += [VisitorFactory(key="linked-no", profile=withdrawn)]
    # Not linked (links need consent), but the cookies of known people: theirs all the same.
    members += [VisitorFactory(key="anon-1"), VisitorFactory(key="anon-2")]
    audience_members_set(audience=audience, visitor_ids=[v.pk for v in members])

    job = audience_export(destination="ids", visitors=audience_visitors(audience.pk))

    keys = {row[0] for row in read_csv(job)[1:]}
    assert keys == {"ck-a", "ck-b", "linked-ok", "anon-1"}


def test_ad_platform_files_have_no_byte_order_mark(segment):
    # Google and Meta read the header byte for byte: "Email", not "\ufeffEmail"
    job = audience_export(destination="google", profiles=Profile.objects.all(), segment=segment)
    with job.file.open("rb") as file:
        assert file.read().startswith(b"Email,")


def test_id_list_neutralises_a_provider_key_that_looks_like_a_formula(advertising, settings):
    settings.CDPHUB_MIN_AUDIENCE_SIZE = 1
    audience = AudienceFactory()
    members = [VisitorFactory(key='=HYPERLINK("http://evil.example/")'), VisitorFactory(key="ck-a")]
    audience_members_set(audience=audience, visitor_ids=[v.pk for v in members])

    job = audience_export(destination="ids", visitors=audience_visitors(audience.pk))

    keys = {row[0] for row in read_csv(job)[1:]}
    assert keys == {'\'=HYPERLINK("http://evil.example/")', "ck-a"}


def test_a_failing_export_is_recorded_as_failed(segment, monkeypatch):
    from audiences.services import exports

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(exports, "export_file_write", broken)
    with pytest.raises(RuntimeError):
        audience_export(destination="google", profiles=Profile.objects.all())
    job = AudienceExport.objects.get()
    assert (job.status, job.message) == ("failed", "disk full")
