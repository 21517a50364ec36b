"""CRM rows that follow a profile merge (see profiles.resolution.followers)."""

from __future__ import annotations

from crm.models import AccountMember, Contact
from profiles.resolution import followers

followers.register(Contact, key="crm_contacts")
# The merged person's accounts become the survivor's (an account both had keeps the survivor's
# link; the merged one's stays with it for an undo).
followers.register(AccountMember, key="account_members", unique_with="company_id")
