"""CRM rows that follow a profile merge (see profiles.merge_followers)."""

from __future__ import annotations

from crm.models import Contact
from profiles import merge_followers

merge_followers.register(Contact, key="crm_contacts")
