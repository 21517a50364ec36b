"""Contacts import: 100k-row CSV created, then imported again as updates, against raw COPY.

Prints rows/s for the check (dry run), the apply and the profile linking that follows it (a
background task in production) of each pass, the peak RSS of the process,
and PostgreSQL's COPY rate for the same rows into a scratch table, with the ratios. Then, end
to end as ``manage.py import_file`` runs it without a broker (the file stored, imported and the
contacts linked to profiles in the one command), a file with 5% bad rows in both apply modes
(all or nothing refuses it; the valid rows only writes the rest and the rows to fix), next to
plain django-import-export importing the same rows with a ``ModelResource`` in the same run.
Rows made by the benchmark are deleted at the end. ``BENCH_IMPORT_ROWS`` changes the size.

``BENCH_IMPORT_MEMORY=1`` measures memory only, cheaply enough for a file of a million rows:
the file is written to disk, then imported once (create, one checked all-or-nothing pass) and
its contacts linked to profiles as ``import_file`` does it, and the peak RSS of the process is
printed after each step.
"""

from __future__ import annotations

import os
import random
import resource
import tempfile
import time
from pathlib import Path

from django.db import connection

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "100000"))
MEMORY_ONLY = os.environ.get("BENCH_IMPORT_MEMORY") == "1"
HEADER = "First name,Last name,E-mail,Phone,City,Job title,External id\n"
FIRST = ["Anna", "Bram", "Chloe", "Daan", "Emma", "Finn", "Julia", "Lars", "Noor", "Sem"]
LAST = ["de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "Mulder", "Bos", "Vos"]
TITLES = ["Buyer", "CFO", "CTO", "Engineer", "Marketing manager", "Owner", "Sales lead"]


def contacts_lines(rows: int, *, title_suffix: str = ""):
    rng = random.Random(42)
    yield HEADER
    for n in range(rows):
        yield (
            f"{rng.choice(FIRST)},{rng.choice(LAST)},bench{n}@bench.example,"
            f"+3161{n:07d},Utrecht,{rng.choice(TITLES)}{title_suffix},bench-{n}\n"
        )


def contacts_csv(rows: int, *, title_suffix: str = "") -> bytes:
    return "".join(contacts_lines(rows, title_suffix=title_suffix)).encode()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_import(data: bytes, mode: str) -> dict:
    from crm.imports.jobs import import_job_apply, import_job_create, import_job_validate
    from crm.imports.linking import import_job_link_profiles

    job = import_job_create(
        resource="contacts", mode=mode, key_field="external_id", file_name="bench.csv", data=data
    )
    started = time.perf_counter()
    job = import_job_validate(job=job)
    checked = time.perf_counter()
    job = import_job_apply(job=job)
    applied = time.perf_counter()
    assert job.status == "applied", job.message
    import_job_link_profiles(job=job)
    linked = time.perf_counter()
    return {
        "check": ROWS / (checked - started),
        "apply": ROWS / (applied - checked),
        "total": ROWS / (applied - started),
        "link": ROWS / (linked - applied),
        "all": ROWS / (linked - started),
        "created": job.created_count,
        "updated": job.updated_count,
    }


def bad_rows_lines(rows: int):
    """The same contacts, one row in twenty with an address that is not one."""
    for n, line in enumerate(contacts_lines(rows)):
        yield line.replace("@bench.example", "-at-bench.example", 1) if n and n % 20 == 0 else line


def end_to_end(path: Path, *, valid_rows_only: bool) -> tuple[float, str]:
    """Seconds for ``import_file`` to run on ``path`` (a create), and what it printed."""
    import contextlib
    import io

    from django.core.management import CommandError, call_command

    out = io.StringIO()
    args = [str(path), "--resource", "contacts", "--mode", "create", "--key", "external_id"]
    if valid_rows_only:
        args += ["--valid-rows-only", str(path.with_suffix(".rejected.csv"))]
    started = time.perf_counter()
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
            call_command("import_file", *args, stdout=out, stderr=io.StringIO())
    except CommandError as refused:
        out.write(f"refused: {str(refused)[:80]}")
    return time.perf_counter() - started, out.getvalue().strip().splitlines()[-1]


def django_import_export_rate(path: Path) -> float:
    """Rows/s of django-import-export importing the rows with a plain ``ModelResource``."""
    import tablib
    from import_export import resources

    from crm.models import Contact

    class ContactImport(resources.ModelResource):
        class Meta:
            model = Contact
            fields = (
                "first_name",
                "last_name",
                "email",
                "phone",
                "city",
                "job_title",
                "external_id",
            )
            import_id_fields = ("external_id",)

    text = path.read_text()
    body = text.partition("\n")[2]  # the rows, under the model field names instead
    names = "first_name,last_name,email,phone,city,job_title,external_id"
    dataset = tablib.Dataset().load(names + "\n" + body, format="csv")
    started = time.perf_counter()
    result = ContactImport().import_data(dataset, dry_run=False, raise_errors=False)
    elapsed = time.perf_counter() - started
    assert not result.has_errors(), "django-import-export refused the rows"
    return len(dataset) / elapsed


def bad_rows_run() -> None:
    """5% bad rows, end to end: both apply modes, and django-import-export."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.csv"
        with path.open("w") as file:
            file.writelines(bad_rows_lines(ROWS))
        refused, refused_said = end_to_end(path, valid_rows_only=False)
        cleanup()
        kept, kept_said = end_to_end(path, valid_rows_only=True)
        cleanup()
        with path.open("w") as file:
            file.writelines(contacts_lines(ROWS))
        die = django_import_export_rate(path)
        cleanup()
        good, _ = end_to_end(path, valid_rows_only=False)
    print(f"end to end, import_file with profile linking, {ROWS} rows:")
    print(f"  all good rows, all or nothing: {ROWS / good:,.0f} rows/s ({good:.1f} s)")
    print(f"  5% bad rows, all or nothing: {ROWS / refused:,.0f} rows/s checked ({refused_said})")
    print(f"  5% bad rows, valid rows only: {ROWS / kept:,.0f} rows/s ({kept_said})")
    print(
        f"  django-import-export ModelResource, same rows (no linking, no checks): {die:,.0f}"
        f" rows/s; cdphub with linking is {ROWS / good / die:.1f}x that"
    )


def copy_rate(data: bytes) -> float:
    with connection.cursor() as cursor:
        cursor.execute(
            # Same columns and types as crm_contact, without constraints or indexes: the floor.
            "CREATE TEMP TABLE bench_contact AS SELECT * FROM crm_contact WITH NO DATA"
        )
        started = time.perf_counter()
        with cursor.cursor.copy(
            "COPY bench_contact (first_name, last_name, email, phone, city, job_title,"
            " external_id) FROM STDIN WITH (FORMAT csv, HEADER true)"
        ) as copy:
            copy.write(data)
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_contact")
    return ROWS / elapsed


def erased_person() -> None:
    """A database in use has erased people: with the suppression list not empty, every row's
    e-mail and phone are checked against it, as in production."""
    from consent.hashing import suppression_hash
    from consent.models import Suppression

    Suppression.objects.create(
        identifier_kind="email",
        value_hash=suppression_hash("email", "erased@bench.example"),
        reason="bench",
    )


def cleanup() -> None:
    from consent.models import Suppression
    from crm.models import ImportJob

    ImportJob.objects.filter(file_name="bench.csv").delete()
    Suppression.objects.filter(reason="bench").delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_profiles AS SELECT profile_id AS id FROM crm_contact"
            " WHERE external_id LIKE 'bench-%%'"
        )
        cursor.execute("DELETE FROM crm_contact WHERE external_id LIKE 'bench-%%'")
        cursor.execute(
            "DELETE FROM profiles_identity WHERE profile_id IN (SELECT id FROM bench_profiles)"
        )
        cursor.execute("DELETE FROM profiles_profile WHERE id IN (SELECT id FROM bench_profiles)")
        cursor.execute("DROP TABLE bench_profiles")


def memory_run() -> None:
    """One create pass as ``import_file`` runs it: the file streamed from disk into the job,
    applied in one checked all-or-nothing pass, then its contacts linked to profiles."""
    from crm.imports.jobs import import_job_apply, import_job_create
    from crm.imports.linking import import_job_link_profiles

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.csv"
        with path.open("w") as file:
            file.writelines(contacts_lines(ROWS))
        size = path.stat().st_size
        with path.open("rb") as file:
            job = import_job_create(
                resource="contacts",
                mode="create",
                key_field="external_id",
                file_name="bench.csv",
                data=file,
            )
    stored = peak_rss_mb()
    started = time.perf_counter()
    job = import_job_apply(job=job, checked_first=False)
    applied = time.perf_counter()
    assert job.status == "applied", job.message
    imported = peak_rss_mb()
    import_job_link_profiles(job=job)
    linked = time.perf_counter()
    print(
        f"memory: {ROWS} rows ({size / 1e6:.0f} MB file) imported at"
        f" {ROWS / (applied - started):,.0f} rows/s, then linked to profiles at"
        f" {ROWS / (linked - applied):,.0f} rows/s; peak RSS {stored:.0f} MB after storing the"
        f" file, {imported:.0f} MB after the import, {peak_rss_mb():.0f} MB after linking"
    )


def run() -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import transaction

    # A fresh checkout's database has no tables yet.
    call_command("migrate", verbosity=0, interactive=False)
    # As in production: with DEBUG on, Django keeps the text of every query in memory.
    settings.DEBUG = False
    cleanup()
    erased_person()
    if MEMORY_ONLY:
        try:
            memory_run()
        finally:
            cleanup()
        return
    created_file = contacts_csv(ROWS)
    updated_file = contacts_csv(ROWS, title_suffix=" (new)")
    try:
        create = timed_import(created_file, "upsert")
        print(f"create: {ROWS} rows, peak RSS so far {peak_rss_mb():.0f} MB")
        update = timed_import(updated_file, "upsert")
        print(f"update: {ROWS} rows, peak RSS so far {peak_rss_mb():.0f} MB")
        with transaction.atomic():
            copy = copy_rate(created_file)
    finally:
        cleanup()
    for name, figures in (("create", create), ("update", update)):
        print(
            f"{name}: import (one checked, all-or-nothing pass, as import_file runs it)"
            f" {figures['apply']:,.0f} rows/s; dry-run check {figures['check']:,.0f} rows/s;"
            f" admin flow check then apply {figures['total']:,.0f} rows/s;"
            f" profile linking afterwards {figures['link']:,.0f} rows/s;"
            f" admin flow with linking {figures['all']:,.0f} rows/s"
            f" ({figures['created']} created, {figures['updated']} updated)"
        )
    print(f"raw COPY of the same rows into a scratch table: {copy:,.0f} rows/s")
    print(
        f"ratios of the import to COPY: create {create['apply'] / copy:.1%}, "
        f"update {update['apply'] / copy:.1%}"
    )
    print(f"peak RSS: {peak_rss_mb():.0f} MB")
    try:
        bad_rows_run()
    finally:
        cleanup()
