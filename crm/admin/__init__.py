"""The CRM admin, the sales and support work surface:

- ``visibility``: what every CRM admin shares (a sales team sees its records; links out of
  sight are not named; safe exports);
- ``actions``: the bulk actions and the action bar's inputs;
- ``records``: tags, companies, contacts; ``deals``: pipelines, stages, deals; ``work``:
  activities, tickets, tasks; ``duplicates``: the duplicate review queue;
- ``teams``: sales teams; ``imports``: spreadsheet import jobs; ``webforms``: a website's
  lead forms (the snippet to embed).

The CRM's part of the profile page is its panel (``crm/panels.py``)."""

from crm.admin import (  # noqa: F401 (registers)
    customfields,
    deals,
    duplicates,
    imports,
    records,
    teams,
    webforms,
    work,
)
