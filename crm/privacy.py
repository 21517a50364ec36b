"""What the CRM holds about a person: the contact, and what was written about them."""

from __future__ import annotations

from django.db.models import Q

from consent import registry
from consent.registry import Subject, delete_rows, scrub_fields
from crm.models import Activity, Company, Contact, Deal, Pipeline, Stage, Tag, Task, Ticket


def _contacts(subject: Subject):
    matching = Q(profile_id__in=subject.profile_ids)
    if subject.emails:
        matching |= Q(email__in=subject.emails)
    if subject.phones:
        matching |= Q(phone__in=subject.phones)
    return Contact.objects.filter(matching)


registry.register(
    Contact,
    find=_contacts,
    erase=delete_rows,
    personal_fields=Contact.PII_FIELDS,
    erase_order=60,
)
registry.register(
    Activity,
    find=lambda subject: Activity.objects.filter(contact__in=_contacts(subject)),
    erase=delete_rows,
    personal_fields=("subject", "body"),
    erase_order=40,
)
registry.register(
    Task,
    find=lambda subject: Task.objects.filter(contact__in=_contacts(subject)),
    erase=delete_rows,
    personal_fields=("title", "description"),
    erase_order=40,
)
# Tickets and deals are the company's records too: kept, with the person scrubbed out.
registry.register(
    Ticket,
    find=lambda subject: Ticket.objects.filter(contact__in=_contacts(subject)),
    erase=lambda rows, subject: scrub_fields(rows, subject, ("subject", "description")),
    personal_fields=("subject", "description"),
    erase_order=40,
)
registry.register(
    Deal,
    find=lambda subject: Deal.objects.filter(contact__in=_contacts(subject)),
    erase=lambda rows, subject: scrub_fields(rows, subject, ("name", "lost_reason")),
    personal_fields=("name",),
    erase_order=40,
)
registry.register_not_personal(Company, "organisations, not people")
registry.register_not_personal(Tag, "labels")
registry.register_not_personal(Pipeline, "sales process configuration")
registry.register_not_personal(Stage, "sales process configuration")
