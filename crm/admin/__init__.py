"""The CRM admin: records (companies, contacts, deals...) and spreadsheet imports."""

from crm.admin import imports, records  # noqa: F401 - registers the model admins
from crm.admin.records import ProfileContactInline

__all__ = ["ProfileContactInline"]
