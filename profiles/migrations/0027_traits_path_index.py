"""The traits index uses ``jsonb_path_ops``: trait conditions are containment only
(``traits @> {...}``), which it serves with one entry per value instead of one per key and
one per value, so every profile written (created, or updated by processing) costs about half
as much in this index. Built before the old one is dropped, both concurrently: a large
profile table stays writable and searchable meanwhile."""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("profiles", "0026_processing_lanes"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="profile",
            index=GinIndex(
                fields=["traits"], name="profile_traits_paths", opclasses=["jsonb_path_ops"]
            ),
        ),
        RemoveIndexConcurrently(model_name="profile", name="profile_traits_gin"),
    ]
