"""Who must react when a segment's members change: audience syncs send who entered and who
exited on (``profiles.destinations.audience``). They register here from their app config, so
membership needs no knowledge of them; they run after the change commits, when the history
they read holds it."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

Listener = Callable[[int], None]  # the segment id
_listeners: list[Listener] = []


def register(listener: Listener) -> Listener:
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def notify_after_commit(segment_id: int) -> None:
    for listener in _listeners:
        transaction.on_commit(lambda listener=listener: listener(segment_id))
