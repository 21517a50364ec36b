"""What other apps do with freshly processed messages, inside the processing transaction.

Processing is the CDP's; consent (``Consent Updated`` events, TCF strings) and the DMP (anonymous
visitors, visitor links) react to the same messages. They register here from their app config,
so the profiles app needs no knowledge of them, and their writes commit or roll back with the
events they come from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class ProcessedMessage(Protocol):
    source_id: int
    type: str
    payload: dict
    timestamp: object
    profile: int  # the resolved (surviving) profile id


Hook = Callable[[Sequence[ProcessedMessage]], None]
_hooks: list[Hook] = []


def register(hook: Hook) -> Hook:
    if hook not in _hooks:
        _hooks.append(hook)
    return hook


def unregister(hook: Hook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


def run(messages: Sequence[ProcessedMessage]) -> None:
    for hook in _hooks:
        hook(messages)
