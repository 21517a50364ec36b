"""Demo CRM: companies, contacts linked to profiles by e-mail, pipelines, deals, activities,
tickets and tasks, owned by a few demo sales reps."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model

from cdphub.demo import vocab
from cdphub.demo.bulk import ids_reserve, rows_copy
from cdphub.demo.people import Person
from crm.models import Activity, Company, Contact, Deal, Pipeline, Stage, Tag, Task, Ticket
from profiles.models import Identity

SALES_REPS = ("demo.sales.anna", "demo.sales.ben", "demo.sales.chloe", "demo.sales.daan")


def sales_reps_ensure() -> list[int]:
    """Owners for CRM records; they cannot log in (no usable password)."""
    ids = []
    for username in SALES_REPS:
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"first_name": username.split(".")[-1].title()}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        ids.append(user.pk)
    return ids


class CrmGenerator:
    def __init__(self, rng: random.Random, now: datetime, sources: dict[str, int]):
        self.rng = rng
        self.now = now
        self.sources = sources
        self.owners = sales_reps_ensure()

    def write(self, people: list[Person]) -> dict[str, int]:
        counts = {}
        tags = [Tag.objects.get_or_create(name=name)[0] for name in vocab.TAGS]
        companies = self.companies_write(max(10, len(people) // 20), counts)
        contacts = self.contacts_write(people, companies, counts)
        self.tags_attach(tags, companies, contacts)
        stages = self.pipelines_ensure()
        deals = self.deals_write(max(10, len(people) // 10), contacts, stages, counts)
        counts["activities"] = self.activities_write(deals, contacts)
        counts["tickets"] = self.tickets_write(contacts)
        counts["tasks"] = self.tasks_write(deals)
        return counts

    def ago(self, max_days: int) -> datetime:
        return self.now - timedelta(seconds=self.rng.uniform(0, max_days * 86400))

    def companies_write(self, count: int, counts: dict) -> list[tuple[int, str]]:
        rng = self.rng
        ids = ids_reserve(Company, count)
        rows = []
        for number, company_id in enumerate(ids):
            name = f"{rng.choice(vocab.COMPANY_WORDS)} {rng.choice(vocab.COMPANY_SUFFIXES)}"
            slug = name.lower().replace(" ", "-")
            created = self.ago(365)
            rows.append(
                (
                    company_id,
                    f"{name} {number + 1}",
                    f"{slug}-{number + 1}.example",
                    rng.choice(vocab.INDUSTRIES),
                    rng.choice(Company.Size.values),
                    rng.choice(list(vocab.COUNTRIES)),
                    rng.choice(self.owners),
                    created,
                    created,
                )
            )
        counts["companies"] = rows_copy(
            Company,
            [
                "id",
                "name",
                "domain",
                "industry",
                "size",
                "country",
                "owner_id",
                "created_at",
                "updated_at",
            ],
            rows,
        )
        return [(row[0], row[5]) for row in rows]

    def contacts_write(self, people, companies, counts) -> list[tuple[int, int | None]]:
        """About a quarter of known people are CRM contacts, linked to their profile by e-mail."""
        rng = self.rng
        chosen = [p for p in people if p.is_known and rng.random() < 0.25]
        ids = ids_reserve(Contact, len(chosen))
        rows, identities, contacts = [], [], []
        for person, contact_id in zip(chosen, ids, strict=True):
            company_id = rng.choice(companies)[0] if rng.random() < 0.8 else None
            created = person.first_seen
            rows.append(
                (
                    contact_id,
                    person.first_name,
                    person.last_name,
                    person.email,
                    person.phone,
                    f"{rng.choice(vocab.COMPANY_WORDS)}straat {rng.randint(1, 200)}",
                    f"{rng.randint(1000, 9999)}",
                    person.city,
                    person.country,
                    rng.choice(vocab.JOB_TITLES) if company_id else "",
                    rng.choice(Contact.LifecycleStage.values),
                    f"demo-crm-{contact_id}",
                    company_id,
                    person.id,
                    rng.choice(self.owners),
                    created,
                    created,
                )
            )
            identities.append(
                (
                    person.id,
                    Identity.Kind.CRM_CONTACT,
                    str(contact_id),
                    None,
                    created,
                    created,
                    created,
                )
            )
            contacts.append((contact_id, company_id))
        counts["contacts"] = rows_copy(
            Contact,
            [
                "id",
                "first_name",
                "last_name",
                "email",
                "phone",
                "street",
                "postal_code",
                "city",
                "country",
                "job_title",
                "lifecycle_stage",
                "external_id",
                "company_id",
                "profile_id",
                "owner_id",
                "created_at",
                "updated_at",
            ],
            rows,
        )
        counts["identities"] = rows_copy(
            Identity,
            [
                "profile_id",
                "kind",
                "value",
                "source_id",
                "first_seen_at",
                "last_seen_at",
                "created_at",
            ],
            identities,
        )
        return contacts

    def tags_attach(self, tags, companies, contacts) -> None:
        rng = self.rng
        company_links = [
            Company.tags.through(company_id=company_id, tag_id=rng.choice(tags).pk)
            for company_id, _ in companies
            if rng.random() < 0.3
        ]
        contact_links = [
            Contact.tags.through(contact_id=contact_id, tag_id=rng.choice(tags).pk)
            for contact_id, _ in contacts
            if rng.random() < 0.2
        ]
        Company.tags.through.objects.bulk_create(company_links, batch_size=5000)
        Contact.tags.through.objects.bulk_create(contact_links, batch_size=5000)

    def pipelines_ensure(self) -> list[Stage]:
        stages = []
        for name, stage_specs in vocab.PIPELINES.items():
            pipeline, _ = Pipeline.objects.get_or_create(name=name)
            for order, (stage_name, probability, won, lost) in enumerate(stage_specs):
                stage, _ = Stage.objects.get_or_create(
                    pipeline=pipeline,
                    name=stage_name,
                    defaults={
                        "order": order,
                        "probability": probability,
                        "is_won": won,
                        "is_lost": lost,
                    },
                )
                stages.append(stage)
        return stages

    def deals_write(self, count, contacts, stages, counts) -> list[int]:
        rng = self.rng
        with_company = [c for c in contacts if c[1]] or contacts
        ids = ids_reserve(Deal, count if with_company else 0)
        rows = []
        for deal_id in ids:
            contact_id, company_id = rng.choice(with_company)
            stage = rng.choice(stages)
            status = "won" if stage.is_won else "lost" if stage.is_lost else "open"
            created = self.ago(180)
            closed = created + timedelta(days=rng.randint(5, 60)) if status != "open" else None
            rows.append(
                (
                    deal_id,
                    f"Deal {deal_id}: {rng.choice(vocab.PRODUCTS)[1]} x{rng.randint(10, 500)}",
                    stage.pipeline_id,
                    stage.pk,
                    company_id,
                    contact_id,
                    Decimal(rng.randrange(500, 80000)),
                    "EUR",
                    stage.probability,
                    (created + timedelta(days=rng.randint(14, 120))).date(),
                    status,
                    "Price" if status == "lost" else "",
                    closed,
                    rng.choice(self.owners),
                    created,
                    closed or created,
                )
            )
        counts["deals"] = rows_copy(
            Deal,
            [
                "id",
                "name",
                "pipeline_id",
                "stage_id",
                "company_id",
                "contact_id",
                "amount",
                "currency",
                "probability",
                "expected_close_date",
                "status",
                "lost_reason",
                "closed_at",
                "owner_id",
                "created_at",
                "updated_at",
            ],
            rows,
        )
        return [(row[0], row[5], row[4]) for row in rows]

    def activities_write(self, deals, contacts) -> int:
        rng = self.rng
        subjects = {
            "call": "Intro call",
            "email": "Sent proposal",
            "meeting": "Demo meeting",
            "note": "Budget confirmed",
        }

        def rows():
            targets = [(None, c, None) for c, _ in contacts if rng.random() < 0.3] + deals
            for deal_id, contact_id, company_id in targets:
                for _ in range(rng.randint(1, 3)):
                    kind = rng.choice(Activity.Kind.values)
                    created = self.ago(120)
                    done = created if rng.random() < 0.7 else None
                    yield (
                        kind,
                        subjects[kind],
                        "",
                        contact_id,
                        deal_id,
                        company_id,
                        rng.choice(self.owners),
                        created + timedelta(days=2),
                        done,
                        created,
                        created,
                    )

        return rows_copy(
            Activity,
            [
                "kind",
                "subject",
                "body",
                "contact_id",
                "deal_id",
                "company_id",
                "owner_id",
                "due_at",
                "done_at",
                "created_at",
                "updated_at",
            ],
            rows(),
        )

    def tickets_write(self, contacts) -> int:
        rng = self.rng

        def rows():
            for contact_id, company_id in contacts:
                if rng.random() > 0.15:
                    continue
                status = rng.choice(Ticket.Status.values)
                created = self.ago(90)
                resolved = created + timedelta(hours=rng.randint(1, 96))
                yield (
                    rng.choice(vocab.TICKET_SUBJECTS),
                    "",
                    contact_id,
                    company_id,
                    status,
                    rng.choice(Ticket.Priority.values),
                    rng.choice(Ticket.Channel.values),
                    rng.choice(self.owners),
                    created,
                    created,
                    resolved if status in ("resolved", "closed") else None,
                )

        return rows_copy(
            Ticket,
            [
                "subject",
                "description",
                "contact_id",
                "company_id",
                "status",
                "priority",
                "channel",
                "owner_id",
                "created_at",
                "updated_at",
                "resolved_at",
            ],
            rows(),
        )

    def tasks_write(self, deals) -> int:
        rng = self.rng

        def rows():
            for deal_id, contact_id, _ in deals:
                if rng.random() > 0.5:
                    continue
                created = self.ago(60)
                due = created + timedelta(days=rng.randint(1, 21))
                yield (
                    "Follow up",
                    "",
                    contact_id,
                    deal_id,
                    rng.choice(Task.Priority.values),
                    rng.choice(self.owners),
                    due,
                    due if due < self.now else None,
                    created,
                    created,
                )

        return rows_copy(
            Task,
            [
                "title",
                "description",
                "contact_id",
                "deal_id",
                "priority",
                "owner_id",
                "due_at",
                "done_at",
                "created_at",
                "updated_at",
            ],
            rows(),
        )
