"""Demo consent: purposes, an append-only history of decisions per person, and the current
state derived from each profile's latest record per purpose."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from cdphub.demo import vocab
from cdphub.demo.bulk import ids_reserve, rows_copy
from cdphub.demo.people import Person
from consent.models import (
    ConsentRecord,
    ConsentState,
    ConsentText,
    DataSubjectRequest,
    ProcessingActivity,
    Purpose,
    RetentionPolicy,
)

# Purposes asked of everyone who identifies; the phone ones only of people with a number.
ASKED_ALWAYS = ("email_marketing", "personalisation", "advertising", "analytics")
ASKED_WITH_PHONE = ("sms_marketing", "phone")


def purposes_ensure() -> dict[str, Purpose]:
    purposes = {}
    for code, name, basis, marketing, written in vocab.PURPOSES:
        purpose, _ = Purpose.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "lawful_basis": basis,
                "is_marketing": marketing,
                "requires_express_written": written,
            },
        )
        purposes[code] = purpose
    return purposes


class ConsentGenerator:
    def __init__(self, rng: random.Random, now: datetime):
        self.rng = rng
        self.now = now
        self.granted: dict[int, set[str]] = {}  # profile id -> purposes granted now
        self.purposes = purposes_ensure()
        self.texts = {
            code: ConsentText.objects.get_or_create(
                purpose=purpose,
                version="1.0",
                defaults={"text": f"I agree to {purpose.name.lower()} by Demo Outdoor."},
            )[0].pk
            for code, purpose in self.purposes.items()
        }

    def write(self, people: list[Person]) -> dict[str, int]:
        records = [r for p in people if p.is_known for r in self.person_records(p)]
        ids = ids_reserve(ConsentRecord, len(records))
        latest: dict[tuple[int, int], tuple] = {}
        rows = []
        # row: id, profile, identifier kind, value, purpose, status, occurred_at, ...
        for record_id, record in zip(ids, records, strict=True):
            row = (record_id, *record)
            rows.append(row)
            key = (record[0], record[3])  # profile, purpose
            if key not in latest or (row[6], row[0]) > (latest[key][6], latest[key][0]):
                latest[key] = row
        counts = {"consent_records": self.records_copy(rows)}
        counts["consent_states"] = rows_copy(
            ConsentState,
            ["profile_id", "purpose_id", "status", "record_id", "updated_at"],
            ((r[1], r[4], r[5], r[0], r[6]) for r in latest.values()),
        )
        codes = {purpose.pk: code for code, purpose in self.purposes.items()}
        for row in latest.values():
            if row[5] == "granted":
                self.granted.setdefault(row[1], set()).add(codes[row[4]])
        self.privacy_register_ensure(people)
        return counts

    def person_records(self, person: Person):
        rng = self.rng
        asked = ASKED_ALWAYS + (ASKED_WITH_PHONE if person.phone else ())
        if rng.random() < 0.5:
            asked += ("third_party_sharing",)
        for code in asked:
            granted = rng.random() < vocab.GRANT_RATES[code]
            at = person.first_seen
            yield self.record(person, code, "granted" if granted else "denied", at, "web_form")
            # Some people change their mind later: withdraw, or grant after a campaign.
            if rng.random() < 0.12:
                later = at + (self.now - at) * rng.random()
                status = "withdrawn" if granted else "granted"
                yield self.record(
                    person, code, status, later, rng.choice(("cmp", "web_form", "api"))
                )

    def record(self, person: Person, code: str, status: str, at: datetime, method: str) -> tuple:
        kind, value = (
            ("phone", person.phone) if code in ASKED_WITH_PHONE else ("email", person.email)
        )
        return (
            person.id,
            kind,
            value,
            self.purposes[code].pk,
            status,
            at,
            at + timedelta(seconds=1),
            "demo-outdoor.example",
            method,
            self.texts[code],
            f"203.0.113.{person.index % 250 + 1}",
            vocab.USER_AGENTS[person.index % 4],
            "https://demo-outdoor.example/preferences",
            "",
        )

    def records_copy(self, rows) -> int:
        return rows_copy(
            ConsentRecord,
            [
                "id",
                "profile_id",
                "identifier_kind",
                "identifier_value",
                "purpose_id",
                "status",
                "occurred_at",
                "recorded_at",
                "source",
                "method",
                "text_version_id",
                "ip_address",
                "user_agent",
                "form_url",
                "tcf_string",
            ],
            rows,
        )

    def privacy_register_ensure(self, people: list[Person]) -> None:
        RetentionPolicy.objects.get_or_create(
            category="visitor_data", defaults={"retention_days": 90}
        )
        activity, created = ProcessingActivity.objects.get_or_create(
            name="Demo: online advertising audiences",
            defaults={
                "description": "Hashed customer lists and DMP audiences sent to ad platforms.",
                "lawful_basis": "consent",
                "data_subjects": "Customers, website visitors",
                "data_categories": "E-mail, phone (hashed), cookie ids, interests",
                "recipients": "Google, Meta",
                "retention": "Visitor data 90 days after last seen",
            },
        )
        if created:
            activity.purposes.set([self.purposes["advertising"]])
        known = [p for p in people if p.is_known]
        for person in self.rng.sample(known, min(len(known), max(3, len(people) // 500))):
            received = self.now - timedelta(days=self.rng.randint(0, 40))
            DataSubjectRequest.objects.create(
                kind=self.rng.choice(DataSubjectRequest.Kind.values),
                subject_email=person.email,
                profile_id=person.id,
                received_at=received,
                due_at=received + timedelta(days=30),
                details="Sent through the privacy form.",
            )
