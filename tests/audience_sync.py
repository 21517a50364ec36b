"""What the audience sync tests of every kind share: people of a shop who identify with a plan
(their e-mail, and a phone when given), and a "Gold" segment of them who granted a purpose,
refreshed; the same identify calls move them in and out of it later."""

from __future__ import annotations

from consent.services import consent_record
from profiles.ingest.collect import messages_collect
from profiles.ingest.processing import pending_process
from profiles.models import Identity, Segment
from profiles.segments.membership import segment_refresh
from tests.factories import SegmentFactory

GOLD = {"trait": "plan", "op": "eq", "value": "gold"}


def identify(source, user: str, plan: str, n: int = 0, *, phone=None, email=None) -> None:
    """An identify call of ``user`` with the plan, processed (``n`` tells calls apart)."""
    traits = {"plan": plan, "email": email or f"{user}@example.com"}
    if phone:
        traits["phone"] = phone
    message = {"type": "identify", "userId": user, "traits": traits, "messageId": f"{user}-{n}"}
    assert not messages_collect(source_id=source.pk, messages=[message]).rejected
    pending_process()


def gold_segment(source, purpose: str, phones: dict[str, str | None], email=None) -> Segment:
    """The segment of these people (user id: phone), each on the gold plan with ``purpose``
    granted; ``email(user)`` spells their address if given."""
    segment = SegmentFactory(name="Gold", rule=GOLD)
    for user, phone in phones.items():
        identify(source, user, "gold", phone=phone, email=email(user) if email else None)
        consent_record(
            profile=Identity.objects.get(value=user).profile,
            purpose=purpose,
            status="granted",
            method="web_form",
        )
    segment_refresh(segment=segment)
    return segment
