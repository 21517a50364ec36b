"""CRM rows that follow a profile merge (see profiles.resolution.followers)."""

from __future__ import annotations

from crm.models import Contact
from profiles.resolution import followers

followers.register(Contact, key="crm_contacts")
