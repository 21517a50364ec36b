"""A CRM import and event processing that meet the same new people at the same moment create
one profile per person: both go through the one identity resolver and its identifier locks."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from crm.models import Contact
from crm.services import contact_profiles_link
from profiles.ingest import hooks
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Event, Identity, PendingMessage, Profile
from tests.factories import SourceFactory

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
