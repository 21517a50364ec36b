"""A CRM import and event processing that meet the same new people at the same moment create
one profile per person: both go through the one identity resolver and its identifier locks."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import OperationalError, connection, transaction

from crm import services as crm_services
from crm.imports import linking
from crm.imports.revert import import_job_revert
from crm.models import Contact, ImportJob
from crm.services import contact_profiles_link
from profiles.ingest import hooks
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Event, Identity, PendingMessage, Profile
from tests.factories import SourceFactory
from tests.plans import scanned_whole

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = 20


@pytest.fixture(autouse=True)
def staged_only(settings):
    settings.CDPHUB_INGEST_PROCESSING = "off"


@pytest.fixture
def people():
    """Contacts saved without a profile yet (as an import leaves them before linking), and a
    collected identify message from each of them."""
    contacts = Contact.objects.bulk_create(
        Contact(first_name=f"Person {i}", email=f"person{i}@example.org") for i in range(PEOPLE)
    )
    messages_collect(
        source_id=SourceFactory().pk,
        messages=[
            {"type": "identify", "anonymousId": f"anon-{i}", "traits": {"email": c.email}}
            for i, c in enumerate(contacts)
        ],
    )
    return contacts


def wait_for_a_lock_wait(done: threading.Event | None = None, timeout: float = 10.0) -> None:
    """Return once another connection waits for a lock, or ``done`` is set, or after the
    timeout."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline and not (done and done.is_set()):
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)


def in_thread(work, errors: list) -> threading.Thread:
    def run():
        try:
            work()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def assert_one_profile_per_person(contacts):
    pending_process()  # what was left for later is processed now
    assert not PendingMessage.objects.exists()
    assert Profile.objects.count() == PEOPLE
    for contact in Contact.objects.filter(pk__in=[c.pk for c in contacts]):
        owner = Identity.objects.get(kind="email", value=contact.email).profile_id
        assert contact.profile_id == owner
        assert Event.objects.get(properties__email=contact.email).profile_id == owner


def test_import_linking_first_then_processing(people):
    errors: list = []
    linked, processed = threading.Event(), threading.Event()

    def link():
        with transaction.atomic():
            contact_profiles_link(contacts=list(Contact.objects.all()))
            linked.set()
            # the transaction stays open until processing is done or waits on it
            wait_for_a_lock_wait(done=processed)

    def process():
        linked.wait(timeout=10)
        pending_process()
        processed.set()

    threads = [in_thread(link, errors), in_thread(process, errors)]
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert_one_profile_per_person(people)


def test_processing_first_then_import_linking(people):
    errors: list = []
    inside = threading.Event()

    def hold_until_someone_waits(messages):
        inside.set()
        wait_for_a_lock_wait()

    def link():
        inside.wait(timeout=10)
        with transaction.atomic():
            contact_profiles_link(contacts=list(Contact.objects.all()))

    hooks.register(hold_until_someone_waits)
    try:
        threads = [in_thread(pending_process, errors), in_thread(link, errors)]
        for thread in threads:
            thread.join(timeout=60)
    finally:
        hooks.unregister(hold_until_someone_waits)
    assert errors == []
    assert_one_profile_per_person(people)


# --- an import's contacts linked in batches side by side ----------------------------------------


def import_file(tmp_path, rows: list[str]):
    """``import_file`` as run without a broker: the import, then linking after its commit."""
    from django.core.management import call_command

    path = tmp_path / "people.csv"
    path.write_text("\n".join(["First name,E-mail,Phone", *rows]) + "\n")
    call_command(
        "import_file", str(path), "--resource", "contacts", "--mode", "create", "--key", "email"
    )
    return ImportJob.objects.latest("pk")


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(linking, "LINK_BATCH_SIZE", 7)


def test_import_links_its_contacts_in_batches_side_by_side(tmp_path, small_batches, monkeypatch):
    # 60 people; every tenth shares a phone with the person after them (another batch at
    # times): one person in the CDP, as the phone is the same.
    rows = [f"P{n},p{n}@example.org,+316123{n:05d}" for n in range(60)]
    for n in range(0, 60, 10):
        rows[n + 1] = rows[n + 1].rsplit(",", 1)[0] + f",+316123{n:05d}"
    threads_seen = set()
    link_one = linking.batch_link

    def batch_link(*args):
        threads_seen.add(threading.current_thread().name)
        return link_one(*args)

    monkeypatch.setattr(linking, "batch_link", batch_link)
    job = import_file(tmp_path, rows)

    job.refresh_from_db()
    assert job.profiles_linked_at is not None
    assert len(threads_seen) == linking.LINK_THREADS  # side by side
    contacts = list(Contact.objects.all())
    assert len(contacts) == 60 and all(c.profile_id for c in contacts)
    for contact in contacts:
        owners = set(
            Identity.objects.filter(
                kind__in=["email", "phone", "crm_contact"],
                value__in=[contact.email, contact.phone, str(contact.pk)],
            ).values_list("profile_id", flat=True)
        )
        assert owners == {contact.profile_id}
    assert Profile.objects.count() == 54  # six pairs share a phone

    import_job_revert(job=job)
    assert (Contact.objects.count(), Profile.objects.count(), Identity.objects.count()) == (0, 0, 0)


def first_batch_fails(monkeypatch, error: Exception) -> None:
    """The first batch linked raises ``error``; the others link as usual."""
    failures = iter([error])
    link = crm_services.contact_profiles_link

    def fails_once(**kwargs):
        if failure := next(failures, None):
            raise failure
        return link(**kwargs)

    monkeypatch.setattr(crm_services, "contact_profiles_link", fails_once)


def test_a_failing_batch_stops_linking_and_linking_again_finishes(
    tmp_path, small_batches, monkeypatch
):
    first_batch_fails(monkeypatch, RuntimeError("the database went away"))

    with pytest.raises(RuntimeError, match="went away"):
        import_file(tmp_path, [f"P{n},p{n}@example.org," for n in range(40)])
    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.APPLIED  # the import itself had committed
    assert job.profiles_linked_at is None
    assert Contact.objects.filter(profile__isnull=True).exists()

    linking.import_job_link_profiles(job=job)  # as the task does when run again

    assert not Contact.objects.filter(profile__isnull=True).exists()
    assert Profile.objects.count() == 40


def test_a_batch_that_deadlocks_is_linked_again(tmp_path, small_batches, monkeypatch, caplog):
    first_batch_fails(monkeypatch, OperationalError("deadlock detected"))

    import_file(tmp_path, [f"P{n},p{n}@example.org," for n in range(20)])

    assert not Contact.objects.filter(profile__isnull=True).exists()
    assert Profile.objects.count() == 20
    assert "linking the batch again" in caplog.text


def test_linking_into_an_empty_hub_looks_profiles_up_by_key(tmp_path, small_batches):
    """The foreign key checks are planned on the first batch, when the profiles table is still
    empty: a whole scan per check, kept as the table grows, made the first big import link
    about fifty times slower."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE profiles_profile")  # known to be empty, as on day one
    before = scanned_whole("profiles_profile")

    import_file(tmp_path, [f"P{n},p{n}@example.org,+316123{n:05d}" for n in range(60)])

    assert Profile.objects.count() == 60  # about 240 foreign key checks
    scanned = scanned_whole("profiles_profile") - before
    assert scanned < 10, scanned
