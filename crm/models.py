"""The CRM's data model: companies, contacts, pipelines and stages, deals, activities,
tickets, tasks, tags, sales teams, imports and their change journal, duplicates.

One module, as Django expects ``models.py``: the models refer to each other throughout."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.functions import Lower
from django.utils import timezone

from profiles.models import validate_origins

OWNER = settings.AUTH_USER_MODEL

# How a linked record shows to someone whose sales teams do not let them see it.
OUT_OF_SIGHT = "(a record of another sales team)"


def nameless_out_of_sight(model):
    """A record marked ``out_of_sight`` (by the admin, for the person looking: see
    ``crm.admin.visibility.mark_links_out_of_sight``) shows as ``OUT_OF_SIGHT``: a visible deal
    still links to its contact, but does not name it. For every model with a visibility rule."""
    named = model.__str__

    def __str__(self) -> str:
        return OUT_OF_SIGHT if self.__dict__.get("out_of_sight") else named(self)

    model.__str__ = __str__
    return model


class SalesTeam(models.Model):
    """A sales team: its members, its lead, and whose CRM records the members see. Only people
    in a team (as member or lead) are limited; see ``crm.selectors.visible_to``."""

    class Visibility(models.TextChoices):
        OWN = "own", "Own records"
        TEAM = "team", "Own and team's records"
        ALL = "all", "All records"

    name = models.CharField(max_length=120, unique=True)
    visibility = models.CharField(
        max_length=10,
        choices=Visibility.choices,
        default=Visibility.TEAM,
        help_text="Which records the members see. The lead always sees the whole team's; "
        "unassigned records are seen by everyone. Someone in several teams sees what any of "
        "them allows.",
    )
    manager = models.ForeignKey(
        OWNER,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="managed_sales_teams",
        limit_choices_to={"is_staff": True},
        verbose_name="team lead",
    )
    members = models.ManyToManyField(
        OWNER, blank=True, related_name="sales_teams", limit_choices_to={"is_staff": True}
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CustomField(models.Model):
    """A field an administrator adds to contacts, companies or deals: stored in the record's
    ``custom_fields`` (by ``key``), checked against this definition by
    ``crm.customfields`` on every path (admin, API, import)."""

    class Model(models.TextChoices):
        CONTACT = "contact", "Contact"
        COMPANY = "company", "Company"
        DEAL = "deal", "Deal"

    class Type(models.TextChoices):
        TEXT = "text", "Text"
        NUMBER = "number", "Whole number"
        DECIMAL = "decimal", "Decimal number"
        DATE = "date", "Date"
        YES_NO = "yes_no", "Yes / no"
        CHOICE = "choice", "Choice"
        MULTI_CHOICE = "multi_choice", "Several choices"

    model = models.CharField(max_length=10, choices=Model.choices, verbose_name="on")
    label = models.CharField(max_length=100)
    key = models.SlugField(
        max_length=50,
        help_text="Its name in the API, imports, exports and rules (letters, digits, _).",
    )
    type = models.CharField(max_length=15, choices=Type.choices, default=Type.TEXT)
    choices = ArrayField(
        models.CharField(max_length=100),
        default=list,
        blank=True,
        help_text="The values a choice field offers, one per line.",
    )
    required = models.BooleanField(
        default=False, help_text="Records cannot be saved or imported without a value."
    )
    help_text = models.CharField(max_length=255, blank=True)
    order = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model", "order", "label"]
        constraints = [
            models.UniqueConstraint(fields=["model", "key"], name="custom_field_key_per_model"),
            models.UniqueConstraint(fields=["model", "label"], name="custom_field_label_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.get_model_display()}: {self.label}"


class Tag(models.Model):
    name = models.CharField(max_length=80, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


@nameless_out_of_sight
class Company(models.Model):
    class Size(models.TextChoices):
        MICRO = "1-9", "1-9"
        SMALL = "10-49", "10-49"
        MEDIUM = "50-249", "50-249"
        LARGE = "250-999", "250-999"
        ENTERPRISE = "1000+", "1000+"

    name = models.CharField(max_length=255)
    domain = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        unique=True,
        help_text="Web domain without scheme or www (example.com); unique, used as import key.",
    )
    industry = models.CharField(max_length=120, blank=True)
    size = models.CharField(max_length=10, choices=Size.choices, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166 alpha-2 code.")
    group_id = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        unique=True,
        help_text="The account's id in your product: the groupId of its group calls, which "
        "create the company or find it by this id (set it to attach an existing company).",
    )
    group_traits = models.JSONField(
        default=dict,
        blank=True,
        help_text="The latest value of each group call trait no field takes (plan, ...).",
    )
    owner = models.ForeignKey(
        OWNER, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_companies"
    )
    custom_fields = models.JSONField(
        default=dict, blank=True, help_text="Values of the custom fields defined for it."
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="companies")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "companies"
        indexes = [models.Index(fields=["owner"], name="company_owner")]

    def __str__(self) -> str:
        return self.name


class AccountMember(models.Model):
    """A person of an account: a CDP profile that made a group call with the company's group
    id (Segment's group). Personal data of the person (the company's is not): erased with them,
    moved with them when profiles merge."""

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="members")
    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.CASCADE, related_name="account_members"
    )
    first_seen_at = models.DateTimeField(help_text="Their first group call with this account.")
    last_seen_at = models.DateTimeField(help_text="Their latest group call with this account.")

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["company", "profile"], name="account_member_unique")
        ]

    def __str__(self) -> str:
        return f"profile {self.profile_id} at {self.company_id}"


@nameless_out_of_sight
class AccountSuggestion(models.Model):
    """An existing company that may be the same organisation as an account made from group
    calls: its domain, or the e-mail domain of its contacts, is the website or domain the calls
    gave. Suggested, never linked by itself: someone in sales accepts (the company takes the
    account's group id, traits and people) or dismisses it."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACCEPTED = "accepted", "Accepted"
        DISMISSED = "dismissed", "Dismissed"

    account = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="suggestions")
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="+")
    domain = models.CharField(max_length=255, help_text="The domain the group calls gave.")
    reason = models.CharField(
        max_length=200, help_text="Why: the company's own domain, or its contacts' e-mails."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        OWNER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["account", "company"], name="account_suggestion_once")
        ]
        indexes = [models.Index(fields=["status", "-created_at"], name="account_suggestion_open")]

    def __str__(self) -> str:
        return f"{self.company} for account {self.account}"


# The domain of a contact's e-mail address, lower-cased (indexed: ``contact_email_domain``).
EMAIL_DOMAIN = Lower(
    Func(F("email"), Value("@"), Value(2), function="split_part", output_field=models.CharField())
)


@nameless_out_of_sight
class Contact(models.Model):
    class LifecycleStage(models.TextChoices):
        SUBSCRIBER = "subscriber", "Subscriber"
        LEAD = "lead", "Lead"
        MQL = "mql", "Marketing qualified lead"
        SQL = "sql", "Sales qualified lead"
        OPPORTUNITY = "opportunity", "Opportunity"
        CUSTOMER = "customer", "Customer"
        EVANGELIST = "evangelist", "Evangelist"
        OTHER = "other", "Other"

    # Personal data, masked for roles without the PII permission and erased on request.
    PII_FIELDS = (
        "first_name",
        "last_name",
        "email",
        "phone",
        "street",
        "postal_code",
        "city",
        "date_of_birth",
    )

    first_name = models.CharField(max_length=120, blank=True)
    last_name = models.CharField(max_length=120, blank=True)
    email = models.EmailField(blank=True, db_index=True)
    phone = models.CharField(max_length=32, blank=True, help_text="Stored in E.164 (+31612345678).")
    street = models.CharField(max_length=255, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    city = models.CharField(max_length=120, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166 alpha-2 code.")
    date_of_birth = models.DateField(null=True, blank=True)
    job_title = models.CharField(max_length=200, blank=True)
    lifecycle_stage = models.CharField(
        max_length=20, choices=LifecycleStage.choices, default=LifecycleStage.LEAD
    )
    external_id = models.CharField(
        max_length=255,
        null=True,
        blank=True,
        unique=True,
        help_text="The contact's id in the system it came from; usable as import key.",
    )
    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="contacts"
    )
    profile = models.ForeignKey(
        "profiles.Profile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="crm_contacts",
        help_text="The CDP profile with the same e-mail or phone.",
    )
    owner = models.ForeignKey(
        OWNER, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_contacts"
    )
    custom_fields = models.JSONField(
        default=dict, blank=True, help_text="Values of the custom fields defined for it."
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="contacts")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        # owner and profile are indexed as foreign keys already: a second index on each would
        # only slow down every import and edit.
        indexes = [
            models.Index(fields=["lifecycle_stage"], name="contact_lifecycle"),
            # The companies whose people write from a domain (account suggestions).
            models.Index(EMAIL_DOMAIN, name="contact_email_domain"),
        ]

    def __str__(self) -> str:
        if self.__dict__.get("pii_masked"):
            # Set by views showing the contact to someone who may not see personal data.
            return f"Contact {self.pk}"
        return self.full_name or self.email or f"Contact {self.pk}"

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)


class Pipeline(models.Model):
    name = models.CharField(max_length=120, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Stage(models.Model):
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=120)
    order = models.PositiveSmallIntegerField(default=0)
    probability = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(100)],
        help_text="Default win probability (0-100) of deals in this stage.",
    )
    is_won = models.BooleanField(default=False)
    is_lost = models.BooleanField(default=False)

    class Meta:
        ordering = ["pipeline", "order"]
        constraints = [
            models.UniqueConstraint(fields=["pipeline", "name"], name="stage_name_per_pipeline"),
            models.CheckConstraint(condition=Q(probability__lte=100), name="stage_probability_pct"),
            models.CheckConstraint(
                condition=~(Q(is_won=True) & Q(is_lost=True)), name="stage_not_won_and_lost"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pipeline}: {self.name}"


@nameless_out_of_sight
class Deal(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        WON = "won", "Won"
        LOST = "lost", "Lost"

    name = models.CharField(max_length=255)
    pipeline = models.ForeignKey(Pipeline, on_delete=models.PROTECT, related_name="deals")
    stage = models.ForeignKey(Stage, on_delete=models.PROTECT, related_name="deals")
    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="deals"
    )
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="deals"
    )
    amount = models.DecimalField(
        max_digits=14, decimal_places=2, default=0, validators=[MinValueValidator(0)]
    )
    currency = models.CharField(max_length=3, default="EUR", help_text="ISO 4217 code.")
    probability = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(100)], help_text="Win probability, 0-100."
    )
    expected_close_date = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    lost_reason = models.CharField(max_length=255, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    owner = models.ForeignKey(
        OWNER, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_deals"
    )
    custom_fields = models.JSONField(
        default=dict, blank=True, help_text="Values of the custom fields defined for it."
    )
    stage_entered_at = models.DateTimeField(
        default=timezone.now, help_text="When the deal entered its current stage."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(probability__lte=100), name="deal_probability_pct"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="deal_amount_not_negative"),
        ]
        indexes = [
            models.Index(fields=["stage", "status"], name="deal_stage_status"),
            models.Index(fields=["owner"], name="deal_owner"),
        ]

    def __str__(self) -> str:
        return self.name


class DealStageChange(models.Model):
    """A deal entering a stage (``from_stage`` empty when it was created there): the deal's
    history on its timeline, and how long deals stay in a stage."""

    deal = models.ForeignKey(Deal, on_delete=models.CASCADE, related_name="stage_changes")
    from_stage = models.ForeignKey(
        Stage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A stage deleted later leaves the history in place, naming no stage.
    to_stage = models.ForeignKey(
        Stage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(
        OWNER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-changed_at"]
        indexes = [models.Index(fields=["deal", "-changed_at"], name="deal_stage_change_deal")]

    def __str__(self) -> str:
        return f"{self.deal_id}: {self.from_stage_id} -> {self.to_stage_id}"


@nameless_out_of_sight
class Activity(models.Model):
    class Kind(models.TextChoices):
        CALL = "call", "Call"
        EMAIL = "email", "E-mail"
        MEETING = "meeting", "Meeting"
        NOTE = "note", "Note"

    class Outcome(models.TextChoices):
        CONNECTED = "connected", "Connected"
        LEFT_VOICEMAIL = "left_voicemail", "Left voicemail"
        NO_ANSWER = "no_answer", "No answer"
        BUSY = "busy", "Busy"
        WRONG_NUMBER = "wrong_number", "Wrong number"
        HELD = "held", "Held"
        NO_SHOW = "no_show", "No show"
        RESCHEDULED = "rescheduled", "Rescheduled"
        CANCELLED = "cancelled", "Cancelled"
        SENT = "sent", "Sent"
        REPLIED = "replied", "Replied"
        BOUNCED = "bounced", "Bounced"

    # Which outcomes each kind of activity can have (a note has none).
    OUTCOMES = {
        Kind.CALL: ("connected", "left_voicemail", "no_answer", "busy", "wrong_number"),
        Kind.MEETING: ("held", "no_show", "rescheduled", "cancelled"),
        Kind.EMAIL: ("sent", "replied", "bounced"),
        Kind.NOTE: (),
    }

    kind = models.CharField(max_length=10, choices=Kind.choices)
    subject = models.CharField(max_length=255)
    body = models.TextField(blank=True, verbose_name="notes")
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True, default="")
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.CASCADE, related_name="activities"
    )
    deal = models.ForeignKey(
        Deal, null=True, blank=True, on_delete=models.CASCADE, related_name="activities"
    )
    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.CASCADE, related_name="activities"
    )
    owner = models.ForeignKey(
        OWNER, null=True, blank=True, on_delete=models.SET_NULL, related_name="crm_activities"
    )
    due_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "activities"
        indexes = [
            models.Index(fields=["contact", "-created_at"], name="activity_contact"),
            models.Index(fields=["deal"], name="activity_deal"),
            models.Index(fields=["owner", "due_at"], name="activity_owner_due"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.subject}"

    def clean(self):
        super().clean()
        if error := activity_outcome_error(self.kind, self.outcome):
            raise ValidationError({"outcome": error})


def activity_outcome_error(kind: str, outcome: str) -> str | None:
    """Why ``outcome`` does not fit an activity of ``kind`` (None when it does): the one rule
    behind the admin form and the API."""
    allowed = Activity.OUTCOMES.get(kind, ())
    if not outcome or outcome in allowed:
        return None
    if not allowed:
        return f"A {kind} has no outcome."
    labels = dict(Activity.Outcome.choices)
    return f"A {kind}'s outcome is one of: " + ", ".join(labels[value] for value in allowed) + "."


@nameless_out_of_sight
class Ticket(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Pending"
        RESOLVED = "resolved", "Resolved"
        CLOSED = "closed", "Closed"

    class Priority(models.TextChoices):
        LOW = "low", "Low"
        NORMAL = "normal", "Normal"
        HIGH = "high", "High"
        URGENT = "urgent", "Urgent"

    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        PHONE = "phone", "Phone"
        CHAT = "chat", "Chat"
        WEB = "web", "Web form"
        SOCIAL = "social", "Social media"

    subject = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets"
    )
    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.EMAIL)
    owner = models.ForeignKey(
        OWNER, null=True, blank=True, on_delete=models.SET_NULL, related_name="crm_tickets"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "priority"], name="ticket_status_priority")]

    def __str__(self) -> str:
        return self.subject


@nameless_out_of_sight
class Task(models.Model):
    class Priority(models.TextChoices):
        LOW = "low", "Low"
        NORMAL = "normal", "Normal"
        HIGH = "high", "High"

    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks"
    )
    deal = models.ForeignKey(
        Deal, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks"
    )
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    owner = models.ForeignKey(
        OWNER, null=True, blank=True, on_delete=models.SET_NULL, related_name="crm_tasks"
    )
    due_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    remind_minutes_before = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(60 * 24 * 30)],
        help_text="E-mail the owner this many minutes before the due time (0: at the due "
        "time); empty: no reminder.",
    )
    reminder_sent_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the reminder went out (a new due time or reminder sends it again).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [
            models.Index(fields=["owner", "done_at"], name="task_owner_open"),
            # The reminders to send: open tasks with a reminder not sent yet, by due time.
            models.Index(
                fields=["due_at"],
                name="task_reminder_due",
                condition=Q(
                    done_at__isnull=True,
                    reminder_sent_at__isnull=True,
                    remind_minutes_before__isnull=False,
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.title


class WebForm(models.Model):
    """A form on a website that posts leads into the hub (``POST /forms/<key>/``): each post
    creates or updates the contact and its CDP profile, and records the consent its checkbox
    gave with the proof."""

    name = models.CharField(max_length=200, unique=True)
    key = models.CharField(
        max_length=40, unique=True, editable=False, help_text="The form's public id, in its URL."
    )
    is_active = models.BooleanField(default=True)
    allowed_origins = ArrayField(
        models.CharField(max_length=300),
        default=list,
        blank=True,
        validators=[validate_origins],
        help_text="Web origins whose pages may post to it (https://shop.example.com), one per "
        "line, or *; pages of other origins are refused.",
    )
    consent_purpose = models.ForeignKey(
        "consent.Purpose",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="What its consent checkbox (field 'consent') agrees to.",
    )
    consent_required = models.BooleanField(
        default=False, help_text="Refuse a post without the consent checkbox ticked."
    )
    consent_text = models.ForeignKey(
        "consent.ConsentText",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The wording shown next to the checkbox, recorded as proof.",
    )
    lifecycle_stage = models.CharField(
        max_length=20, choices=Contact.LifecycleStage.choices, default="lead"
    )
    owner = models.ForeignKey(
        OWNER,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Owner of the contacts it creates.",
    )
    posts_per_hour = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1)],
        help_text="Posts accepted per hour from one address (more: refused as a flood).",
    )
    success_url = models.URLField(
        blank=True,
        verbose_name="success URL",
        help_text="Where a browser goes after a plain (non-script) post.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin.rstrip("/") in self.allowed_origins


class WebFormPost(models.Model):
    """A post a web form accepted: which contact it made or updated, and from where (the
    flood limit counts these)."""

    form = models.ForeignKey(WebForm, on_delete=models.CASCADE, related_name="posts")
    contact = models.ForeignKey(
        Contact, null=True, on_delete=models.SET_NULL, related_name="web_form_posts"
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True, verbose_name="IP address")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["form", "ip_address", "created_at"], name="webformpost_flood")
        ]

    def __str__(self) -> str:
        return f"post to {self.form} at {self.created_at:%Y-%m-%d %H:%M}"


class ImportJobManager(models.Manager):
    def get_queryset(self):
        # The file can be 100+ MB: it is read in slices by the importer, never loaded whole.
        return super().get_queryset().defer("file_data", "rejected_file")


class ImportJob(models.Model):
    """One spreadsheet import: the file (kept in the database so any web server or worker can
    read it), how it is mapped, its preview, progress, errors and outcome."""

    class Resource(models.TextChoices):
        CONTACTS = "contacts", "Contacts"
        COMPANIES = "companies", "Companies"
        DEALS = "deals", "Deals"
        ACTIVITIES = "activities", "Activities"

    class Mode(models.TextChoices):
        CREATE = "create", "Create only (skip rows whose key exists)"
        UPDATE = "update", "Update only (skip rows whose key is unknown)"
        UPSERT = "upsert", "Create and update"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be checked"
        VALIDATING = "validating", "Checking"
        INVALID = "invalid", "Has errors (nothing written)"
        VALIDATED = "validated", "Checked: ready to apply"
        APPLYING = "applying", "Applying"
        APPLIED = "applied", "Applied"
        FAILED = "failed", "Failed (nothing written)"
        REVERTED = "reverted", "Reverted"

    resource = models.CharField(max_length=20, choices=Resource.choices)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.UPSERT)
    key_field = models.CharField(
        max_length=40, help_text="The field that identifies existing rows (email, external_id...)."
    )
    column_map = models.JSONField(
        default=dict,
        blank=True,
        help_text="File header -> field. Filled from names and synonyms; '-' ignores a column.",
    )
    file_name = models.CharField(max_length=255)
    file_data = models.BinaryField(help_text="The uploaded file, stored with the job.")
    file_size = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(
        default=list, blank=True, help_text="Row errors: row, column, value, message (first 1000)."
    )
    warning_count = models.PositiveIntegerField(default=0)
    warnings = models.JSONField(
        default=list,
        blank=True,
        help_text="Values kept with a warning (a phone number in no assigned range): row, "
        "column, value, message (first 1000).",
    )
    preview = models.JSONField(
        default=list, blank=True, help_text="First rows of the check: outcome and field changes."
    )
    message = models.TextField(blank=True)
    new_records_owner = models.ForeignKey(
        OWNER,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Owner of the records the import creates without an owner column value.",
    )
    new_records_team = models.ForeignKey(
        "SalesTeam",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Or: the records it creates without an owner are shared round-robin among "
        "this team's members.",
    )
    valid_rows_only = models.BooleanField(
        default=False,
        help_text="Applied in the mode that writes the valid rows and leaves the others in the "
        "rejected rows file; otherwise all rows or none.",
    )
    rejected_file = models.BinaryField(
        null=True,
        blank=True,
        editable=False,
        help_text="The rows left out (valid rows only): the original columns and the reason, "
        "as CSV to fix and import again.",
    )
    created_by = models.ForeignKey(
        OWNER, null=True, blank=True, on_delete=models.SET_NULL, related_name="crm_import_jobs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    reverted_at = models.DateTimeField(null=True, blank=True)
    profiles_linked_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the imported contacts were linked to CDP profiles (done in the "
        "background right after the import).",
    )

    objects = ImportJobManager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "-created_at"], name="importjob_status")]

    def __str__(self) -> str:
        return f"Import {self.pk}: {self.resource} from {self.file_name}"

    @property
    def progress_percent(self) -> int:
        return int(100 * self.rows_done / self.rows_total) if self.rows_total else 0


class ImportChange(models.Model):
    """What one batch of an import did to one model, so the import can be reverted: created
    rows are deleted, updated rows get their ``before`` values back. One row per batch keeps
    the log small and fast to write for imports of millions of rows."""

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="changes")
    model = models.CharField(max_length=40, help_text="app_label.model of the changed rows.")
    action = models.CharField(max_length=10, choices=Action.choices)
    object_ids = ArrayField(models.BigIntegerField())
    row_numbers = ArrayField(
        models.PositiveIntegerField(), default=list, help_text="File rows, aligned with the ids."
    )
    befores = models.JSONField(
        null=True, blank=True, help_text="Previous values of updated rows, aligned with the ids."
    )

    class Meta:
        ordering = ["job", "id"]
        indexes = [models.Index(fields=["job", "model", "action"], name="importchange_job")]

    def __str__(self) -> str:
        return f"{self.action} {len(self.object_ids)} {self.model}"


class DataExport(models.Model):
    """Audit row of an admin export: who exported what, and whether personal data was in it."""

    resource = models.CharField(max_length=40)
    row_count = models.PositiveIntegerField()
    file_format = models.CharField(max_length=10)
    included_pii = models.BooleanField()
    exported_by = models.ForeignKey(
        OWNER, null=True, blank=True, on_delete=models.SET_NULL, related_name="crm_exports"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.resource} export by {self.exported_by} ({self.row_count} rows)"


@nameless_out_of_sight
class DuplicateCandidate(models.Model):
    """A pair of contacts that look like the same person, waiting for review. Merging deletes
    the pair with the merged contact (``ContactMerge`` keeps the record)."""

    class Status(models.TextChoices):
        OPEN = "open", "To review"
        DISMISSED = "dismissed", "Not duplicates"

    contact_a = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    contact_b = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(help_text="0-1: how sure the match is.")
    reasons = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-score", "id"]
        constraints = [
            models.UniqueConstraint(fields=["contact_a", "contact_b"], name="duplicate_pair"),
            models.CheckConstraint(condition=Q(contact_a__lt=F("contact_b")), name="pair_ordered"),
        ]
        indexes = [models.Index(fields=["status", "-score"], name="duplicate_queue")]

    def __str__(self) -> str:
        return f"{self.contact_a_id} ~ {self.contact_b_id} ({self.score:.2f})"


@nameless_out_of_sight
class ContactMerge(models.Model):
    """Audit row of a contact merge: the merged contact as it was and what moved."""

    survivor = models.ForeignKey(
        Contact, null=True, on_delete=models.SET_NULL, related_name="merges_received"
    )
    merged_id = models.BigIntegerField(help_text="Id of the contact merged away (now deleted).")
    merged_data = models.JSONField(help_text="The merged contact's fields before the merge.")
    moved = models.JSONField(default=dict, help_text="Ids moved to the survivor, by table.")
    merged_by = models.ForeignKey(
        OWNER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Contact {self.merged_id} -> {self.survivor_id}"
