"""DMP rows that follow a profile merge (see profiles.resolution.followers)."""

from __future__ import annotations

from audiences.models import Visitor
from profiles.resolution import followers

followers.register(Visitor, key="visitors")
