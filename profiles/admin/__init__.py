"""The CDP's admin, one module per part of the hub:

- ``sources``: sources, the events each sent lately, and the rejected messages (retry);
- ``profiles``: the profile page (overview, manual merge, event timeline), identities, events;
- ``resolution``: merges (undo) and the merge conflict queue (approve / reject);
- ``segments``: segments (rule, preview, refresh, static upload, export), membership history;
- ``traits``: computed traits that marketers define (a preview on a sample before saving);
- ``plans``: tracking plans (events and their schemas, the sources following each, violations),
  the violations list, and what a source sends with a draft plan generated from it;
- ``destinations``: destinations (signing secret shown once, what each receives, pause and
  resume, delivery counts and latest attempts) and their deliveries (dead letters retried).
"""

from profiles.admin import (  # noqa: F401 (registers)
    destinations,
    plans,
    profiles,
    resolution,
    segments,
    sources,
    traits,
)
