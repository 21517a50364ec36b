"""Segments: who is in which group of profiles, and what is computed about each profile.

1. ``rules``: the JSON rule language, validated and compiled to one SQL query.
2. ``computed``: computed traits (lifetime value, RFM, counts per window) from the events, which
   rules may read.
3. ``membership``: previews, refreshes (scheduled, on demand, after events), static lists and
   the membership history.
4. ``exports``: members allowed for a purpose, as a CSV or sent to a webhook.
"""
