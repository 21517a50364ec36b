"""Who must react when a person's consent changes. Other apps register here (the DMP unlinks a
visitor at once when advertising or personalisation consent goes), so the consent app needs no
knowledge of them; the reactions run in the transaction of the change."""

from __future__ import annotations

from collections.abc import Callable

Listener = Callable[[int, str], None]  # (profile id, purpose code)
_listeners: list[Listener] = []


def register(listener: Listener) -> Listener:
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def notify(*, profile_id: int | None, purpose_code: str) -> None:
    if profile_id is None:
        return
    for listener in _listeners:
        listener(profile_id, purpose_code)
