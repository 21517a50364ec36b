"""Writes of the DMP. Callers import from here; the modules split it by concern."""

from audiences.services.evaluation import audience_preview, audience_refresh, audience_rule_errors
from audiences.services.exports import ExportError, audience_export
from audiences.services.imports import (
    Observation,
    ProviderFileError,
    RowError,
    TaxonomyImportError,
    TaxonomyImportResult,
    provider_file_header_check,
    provider_file_import_create,
    provider_file_import_run,
    taxonomy_import,
    trait_hits_upsert,
)
from audiences.services.visitors import (
    VisitorSighting,
    audience_members_set,
    visitor_data_purge,
    visitor_links_sync,
    visitor_links_sync_many,
    visitors_observe,
)

__all__ = [
    "ExportError",
    "Observation",
    "ProviderFileError",
    "RowError",
    "TaxonomyImportError",
    "TaxonomyImportResult",
    "VisitorSighting",
    "audience_export",
    "audience_members_set",
    "audience_preview",
    "audience_refresh",
    "audience_rule_errors",
    "provider_file_header_check",
    "provider_file_import_create",
    "provider_file_import_run",
    "taxonomy_import",
    "trait_hits_upsert",
    "visitor_data_purge",
    "visitor_links_sync",
    "visitor_links_sync_many",
    "visitors_observe",
]
