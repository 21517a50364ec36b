"""Provider segment file import: rows per second through the batched upserts."""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta

from django.core.files.base import ContentFile
from django.utils import timezone

ROWS = 200_000


def run() -> None:
    from audiences.models import Category, DataProvider, ProviderFileImport, Visitor
    from audiences.services import provider_file_import_run

    provider, _ = DataProvider.objects.get_or_create(name="Benchmark provider")
    categories = [
        Category.objects.get_or_create(
            code=f"BENCH-{n}", defaults={"name": f"Bench {n}", "kind": "interest"}
        )[0].code
        for n in range(20)
    ]
    run_id = uuid.uuid4().hex[:8]
    rng = random.Random(1)
    now = timezone.now()
    lines = ["cookie_id,category,timestamp"]
    for _ in range(ROWS):
        seen = now - timedelta(minutes=rng.randrange(60 * 24 * 20))
        lines.append(
            f"bench-{run_id}-{rng.randrange(ROWS // 3)},{rng.choice(categories)},{seen.isoformat()}"
        )
    job = ProviderFileImport.objects.create(
        provider=provider, file=ContentFile("\n".join(lines).encode(), name="bench.csv")
    )
    started = time.monotonic()
    job = provider_file_import_run(job_id=job.pk)
    elapsed = time.monotonic() - started
    print(
        f"{job.imported_rows} rows ({job.error_rows} bad) in {elapsed:.1f}s: "
        f"{job.imported_rows / elapsed:,.0f} rows/s"
    )
    Visitor.objects.filter(key__startswith=f"bench-{run_id}-").delete()
    job.file.delete()
    job.delete()
    Category.objects.filter(code__in=categories).delete()
    provider.delete()
