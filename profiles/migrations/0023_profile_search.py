import django.contrib.postgres.indexes
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations

import profiles.models


class Migration(migrations.Migration):
    # The index is built without locking the profile table: on an installation with millions of
    # profiles, building it takes a while and collection goes on meanwhile.
    atomic = False

    dependencies = [
        ("profiles", "0022_partitioned_events"),
    ]

    operations = [
        # A trusted extension (PostgreSQL 13 and later): the database owner may create it.
        TrigramExtension(),
        AddIndexConcurrently(
            model_name="profile",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass(
                    profiles.models.ProfileSearchText("traits"), name="gin_trgm_ops"
                ),
                name="profile_search_trgm",
            ),
        ),
    ]
