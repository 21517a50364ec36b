"""The register of processing activities (GDPR Art. 30) as CSV, for the admin and the API."""

from __future__ import annotations

from cdphub.csv_export import SafeCsvWriter

REGISTER_COLUMNS = [
    "name",
    "description",
    "controller",
    "lawful_basis",
    "data_subjects",
    "data_categories",
    "recipients",
    "third_country_transfers",
    "retention",
    "security_measures",
]


def write_register_csv(stream, activities) -> None:
    writer = SafeCsvWriter(stream)
    writer.writerow([*REGISTER_COLUMNS, "purposes", "updated_at"])
    for activity in activities:
        writer.writerow(
            [
                *(getattr(activity, column) for column in REGISTER_COLUMNS),
                ", ".join(sorted(purpose.code for purpose in activity.purposes.all())),
                activity.updated_at.isoformat(),
            ]
        )
