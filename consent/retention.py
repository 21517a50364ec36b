"""Retention: what each data category's purge deletes. Apps register a purger per category
(in their ``privacy.py``), so the ingestion's rejected messages or the CRM's import files join
the schedule without the consent app knowing their models."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.db import models, transaction

# A purger deletes rows older than the cutoff, in batches of the given size; returns the count.
Purger = Callable[[dt.datetime, int], int]

_purgers: dict[str, list[Purger]] = {}


def register_purger(category: str, purger: Purger) -> None:
    _purgers.setdefault(category, []).append(purger)


def purgers(category: str) -> list[Purger]:
    return list(_purgers.get(category, ()))


def delete_in_batches(queryset: models.QuerySet, batch_size: int) -> int:
    """Delete the rows of ``queryset`` a batch per transaction: locks stay short and a purge of
    millions of rows never holds the table."""
    total = 0
    model = queryset.model
    while True:
        with transaction.atomic():
            pks = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
            if not pks:
                return total
            model.objects.filter(pk__in=pks).delete()
        total += len(pks)
