"""The purposes and retention policies every installation starts with.

Shared by the data migration that seeds them and by ``purposes_ensure_defaults`` (which puts back
what a test database flush or an operator removed), so the two never drift apart.
"""

from __future__ import annotations

DEFAULT_PURPOSES: tuple[dict, ...] = (
    {
        "code": "email_marketing",
        "name": "E-mail marketing",
        "lawful_basis": "consent",
        "is_marketing": True,
        "requires_express_written": False,
        "description": "Newsletters, offers and other commercial e-mail.",
        "text": "Yes, send me news and offers by e-mail. I can unsubscribe at any time.",
    },
    {
        "code": "sms_marketing",
        "name": "SMS marketing",
        "lawful_basis": "consent",
        "is_marketing": True,
        "requires_express_written": True,
        "description": "Marketing text messages to one specific phone number; needs express "
        "written consent for that number (TCPA).",
        "text": "I agree to receive recurring marketing text messages at the phone number "
        "provided. Consent is not a condition of purchase. Reply STOP to stop.",
    },
    {
        "code": "phone",
        "name": "Phone marketing",
        "lawful_basis": "consent",
        "is_marketing": True,
        "requires_express_written": False,
        "description": "Marketing phone calls.",
        "text": "Yes, you may call me about offers and news.",
    },
    {
        "code": "personalisation",
        "name": "Personalisation",
        "lawful_basis": "consent",
        "is_marketing": False,
        "requires_express_written": False,
        "description": "Tailoring content and recommendations to the person's behaviour.",
        "text": "Use my browsing and purchase history to personalise what I see.",
    },
    {
        "code": "advertising",
        "name": "Advertising and audience sharing",
        "lawful_basis": "consent",
        "is_marketing": True,
        "requires_express_written": False,
        "description": "Personalised advertising, including sharing hashed identifiers with "
        "advertising platforms (audiences, Customer Match).",
        "text": "Use my data to show me relevant advertising on other websites and apps.",
    },
    {
        "code": "analytics",
        "name": "Analytics",
        "lawful_basis": "consent",
        "is_marketing": False,
        "requires_express_written": False,
        "description": "Measuring the use of websites, apps and campaigns.",
        "text": "Measure how I use the website and apps so they can be improved.",
    },
    {
        "code": "third_party_sharing",
        "name": "Third-party sharing",
        "lawful_basis": "consent",
        "is_marketing": True,
        "requires_express_written": False,
        "description": "Passing personal data to selected partners for their own marketing.",
        "text": "Share my contact details with selected partners for their offers.",
    },
)

DEFAULT_TEXT_VERSION = "1"

DEFAULT_RETENTION_DAYS: dict[str, int] = {
    "visitor_data": 90,
    "raw_events": 730,
    "rejected_messages": 30,
    "import_files": 90,
    "exports": 30,
    # The outbox of destinations once sent: copies of events, kept to answer "was it sent?".
    "deliveries": 14,
}
