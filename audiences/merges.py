"""DMP rows that follow a profile merge (see profiles.merge_followers)."""

from __future__ import annotations

from audiences.models import Visitor
from profiles import merge_followers

merge_followers.register(Visitor, key="visitors")
