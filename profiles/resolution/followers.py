"""The rows that follow a profile when it is merged into another one, and go back on undo.

Each app registers its own in a ``merges.py`` (loaded by the profiles app's ``ready()``): the
hub moves other apps' rows without knowing their models. A follower either re-points the
merged profile's rows to the survivor (the default, recording their ids for undo) or merges
them with a function of its own (consent states: the newer state per purpose wins). A model
with a foreign key to ``Profile`` is registered here or declared as staying put, with the
reason; a test fails for any other.

Merge functions take ``(survivor_id, merged_id)`` and return what to record in the merge's
audit row (``ProfileMerge.moved``); undo functions take that record and the two ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import models

from cdphub.sql import query

Record = dict[str, object]


@dataclass(frozen=True)
class Follower:
    model: type[models.Model]
    merge: Callable[[int, int], Record]
    undo: Callable[[Record, int, int], None]

    @property
    def label(self) -> str:
        return self.model._meta.label


_followers: dict[str, Follower] = {}
_staying: dict[str, str] = {}


def register(
    model: type[models.Model],
    *,
    key: str | None = None,
    merge: Callable[[int, int], Record] | None = None,
    undo: Callable[[Record, int, int], None] | None = None,
    unique_with: str = "",
) -> None:
    """``model``'s rows follow merges. Without ``merge``/``undo``: re-pointed by their
    ``profile_id`` and recorded under ``key``; ``unique_with`` names a column unique together
    with the profile (the survivor's own row for that value stays, the merged one's too)."""
    if merge is None:
        key = key or model._meta.model_name
        merge = _repointer(model, key, unique_with)
        undo = _mover_back(model, key)
    if undo is None:
        raise ValueError(f"{model._meta.label}: a merge function needs its undo")
    _followers[model._meta.label] = Follower(model, merge, undo)


def register_staying(model: type[models.Model], reason: str) -> None:
    """Declare, with the reason, that ``model``'s rows stay on the merged profile."""
    _staying[model._meta.label] = reason


def followers() -> list[Follower]:
    return sorted(_followers.values(), key=lambda follower: follower.label)


def is_covered(model: type[models.Model]) -> bool:
    return model._meta.label in _followers or model._meta.label in _staying


def _repointer(model: type[models.Model], key: str, unique_with: str):
    table = model._meta.db_table
    # Table and column names come from model metadata: no user input.
    keep = (
        f" AND {unique_with} NOT IN (SELECT {unique_with} FROM {table} WHERE profile_id = %b)"  # noqa: S608
        if unique_with
        else ""
    )

    def merge(survivor_id: int, merged_id: int) -> Record:
        params = [survivor_id, merged_id, *([survivor_id] if unique_with else [])]
        rows = query(
            f"UPDATE {table} SET profile_id = %b WHERE profile_id = %b{keep} RETURNING id",  # noqa: S608
            params,
        )
        return {key: [row[0] for row in rows]}

    return merge


def _mover_back(model: type[models.Model], key: str):
    def undo(record: Record, survivor_id: int, merged_id: int) -> None:
        ids = record.get(key) or []
        if ids:
            model._base_manager.filter(pk__in=ids, profile_id=survivor_id).update(
                profile_id=merged_id
            )

    return undo
