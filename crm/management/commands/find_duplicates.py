from __future__ import annotations

from django.core.management.base import BaseCommand

from cdphub.csv_export import SafeCsvWriter
from crm.duplicates import DEFAULT_MIN_SCORE, duplicate_candidates
from crm.services import duplicates_refresh


class Command(BaseCommand):
    help = "List likely duplicate contacts (pairs with score and reasons)."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=["csv", "text"], default="text")
        parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE)
        parser.add_argument(
            "--save", action="store_true", help="Also fill the admin's review queue."
        )

    def handle(self, *args, **options):
        candidates = duplicate_candidates(min_score=options["min_score"])
        if options["format"] == "csv":
            writer = SafeCsvWriter(self.stdout)
            writer.writerow(
                ["contact_a", "external_id_a", "contact_b", "external_id_b", "score", "reasons"]
            )
            for c in candidates:
                writer.writerow(
                    [
                        c.a["id"],
                        c.a["external_id"] or "",
                        c.b["id"],
                        c.b["external_id"] or "",
                        f"{c.score:.3f}",
                        "; ".join(c.reasons),
                    ]
                )
        else:
            for c in candidates:
                self.stdout.write(
                    f"{c.a['id']} ~ {c.b['id']}  {c.score:.2f}  {', '.join(c.reasons)}"
                )
            self.stdout.write(f"{len(candidates)} candidate pair(s)")
        if options["save"]:
            open_pairs = duplicates_refresh(min_score=options["min_score"])
            self.stderr.write(f"{open_pairs} pair(s) to review in the admin")
