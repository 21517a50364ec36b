"""Spreadsheet import jobs (contacts, companies, deals, activities), step by step:

1. The file is checked and stored: ``jobs.import_job_create`` refuses what is not a readable
   CSV/XLSX of acceptable size (``crm.importfiles``) and keeps the file with a new job.
2. Its columns are mapped: the header row is matched to the fields of ``crm.resources`` (names,
   synonyms and the person's overrides), in ``run.ImportRun.checked_mapping``.
3. It is validated and previewed: ``jobs.import_job_validate`` makes one pass over the file
   (``run``), batch by batch: cells parsed, references to other records resolved
   (``references``), duplicate keys found, each row classified new, updated, skipped or in
   error with its field changes (``classify``). Nothing is written but the job's counts,
   errors and preview.
4. It is applied in batches: ``jobs.import_job_apply`` makes the same pass in one transaction
   and writes each batch with set-based inserts and updates, logging every row it inserts or
   changes in the change journal (``write``); any row error rolls everything back.
5. Contacts are linked to CDP profiles in the background, after the import's transaction:
   ``crm.tasks.link_import_profiles_task`` runs ``linking.import_job_link_profiles``.
6. An applied import can be reverted from its journal: ``revert.import_job_revert``.

``rows`` holds the row that goes through these steps. Callers in the project import from the
module that owns a function; the public entry points are also named here, for code outside
the CRM app.
"""

from crm.imports.jobs import (
    import_job_apply,
    import_job_check_actor,
    import_job_create,
    import_job_validate,
)
from crm.imports.linking import import_job_link_profiles
from crm.imports.revert import import_job_revert

__all__ = [
    "import_job_apply",
    "import_job_check_actor",
    "import_job_create",
    "import_job_link_profiles",
    "import_job_revert",
    "import_job_validate",
]
