"""Whether a row may be deleted: the rows that refer to it with ``PROTECT`` or ``RESTRICT``,
directly or through the rows its delete would cascade to.

Django's deletion collector finds them by loading every referencing row (and every cascaded
row) before it raises ``ProtectedError``: a source with millions of events would be read whole
to answer "no". Here each referencing model costs one EXISTS query, and only a blocked delete
counts its blockers, up to a bound."""

from __future__ import annotations

from collections.abc import Iterator

from django.db import models
from django.db.models import Q

# Blockers are counted up to this; beyond it the answer says "more than".
COUNT_LIMIT = 1000
# Cascades followed this deep (pipeline -> stages -> deals is one level).
MAX_CASCADE_DEPTH = 3


class DeleteProtected(Exception):
    """Other rows still refer to the object; ``errors`` counts them by kind."""

    def __init__(self, instance: models.Model, blockers: dict[str, int]):
        self.blockers = blockers
        counted = {label: count_text(count) for label, count in blockers.items()}
        self.errors = {label: [f"{text} {label} refer to it"] for label, text in counted.items()}
        what = ", ".join(f"{text} {label}" for label, text in counted.items())
        super().__init__(
            f"{instance._meta.verbose_name} {instance.pk} cannot be deleted: {what} refer to it."
        )


def count_text(count: int) -> str:
    return f"more than {COUNT_LIMIT}" if count > COUNT_LIMIT else str(count)


def protected_paths(
    model: type[models.Model], depth: int = 0, seen: tuple = ()
) -> Iterator[tuple[type[models.Model], str]]:
    """(referencing model, lookup from it to ``model``'s primary key) for every relation that
    would stop deleting a ``model`` row."""
    for rel in model._meta.related_objects:
        on_delete = getattr(rel, "on_delete", None)
        if on_delete in (models.PROTECT, models.RESTRICT):
            yield rel.related_model, rel.field.name
        elif (
            on_delete is models.CASCADE
            and depth < MAX_CASCADE_DEPTH
            and rel.related_model not in (*seen, model)
        ):
            for blocker, lookup in protected_paths(rel.related_model, depth + 1, (*seen, model)):
                yield blocker, f"{lookup}__{rel.field.name}"


def delete_blockers(instance: models.Model) -> dict[str, int]:
    """Kind (plural verbose name) -> number of rows (up to ``COUNT_LIMIT`` + 1) that stop
    ``instance`` from being deleted; empty when it may be deleted."""
    lookups: dict[type[models.Model], Q] = {}
    for blocker, lookup in protected_paths(type(instance)):
        lookups[blocker] = lookups.get(blocker, Q()) | Q(**{lookup: instance.pk})
    blockers: dict[str, int] = {}
    for blocker, condition in lookups.items():
        rows = blocker._base_manager.filter(condition)
        if rows.exists():
            label = str(blocker._meta.verbose_name_plural)
            blockers[label] = rows.values("pk")[: COUNT_LIMIT + 1].count()
    return blockers
