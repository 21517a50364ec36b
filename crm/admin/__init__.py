"""The CRM admin: records (companies, contacts, deals...), sales teams and spreadsheet imports."""

from crm.admin import imports, records, teams  # noqa: F401 - registers the model admins
from crm.admin.records import ProfileContactInline

__all__ = ["ProfileContactInline"]
