"""Identity resolution: which profile a person's identifiers belong to, in the order it is used.

1. ``normalize``: an identifier in its canonical form (e-mail lower-cased, phone in E.164, junk
   refused), the same for every path.
2. ``identifiers``: a collected message's identifiers, strongest first, and the advisory lock
   keys every path takes before it creates a profile or an identity.
3. ``batch``: event processing's resolver, a whole batch in memory, then a few bulk statements.
4. ``resolver``: the resolver of every other path (CRM contacts, imports): identifiers in, a
   profile per person out, under the same locks.
5. ``merges``: merging profiles (the oldest survives), undoing a merge, and the review queue of
   merges a rule forbade.
6. ``followers``: the registry through which other apps' rows follow a merge and its undo.
"""
