from django.core.management.base import BaseCommand, CommandError

from audiences.services import TaxonomyImportError, taxonomy_import


class Command(BaseCommand):
    help = (
        "Create or update taxonomy categories from a CSV with the columns code, name, kind "
        "(demographic, interest, purchase_intent), parent_code, tier. All or nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the CSV file (UTF-8).")

    def handle(self, *args, file, **options):
        try:
            with open(file, encoding="utf-8-sig", newline="") as handle:
                result = taxonomy_import(file=handle)
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}") from error
        except TaxonomyImportError as error:
            for row_error in error.errors:
                self.stderr.write(str(row_error))
            raise CommandError(f"{len(error.errors)} bad row(s); nothing was imported.") from error
        self.stdout.write(f"Taxonomy imported: {result.created} created, {result.updated} updated.")
