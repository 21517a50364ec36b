"""The CRM admin: records (companies, contacts, deals...), sales teams and spreadsheet imports.
The CRM's part of the profile page is its panel (``crm/panels.py``)."""

from crm.admin import imports, records, teams  # noqa: F401 - registers the model admins
