"""Single-column foreign key indexes that a wider index already serves: every event, identity
and staged message wrote entries into them for nothing. Only the indexes are dropped (not the
constraints, which Django would re-create and re-validate over the whole event table)."""

import django.db.models.deletion
from django.db import migrations, models


# (table, index) pairs as created by the earlier migrations, with the column to re-create on.
COVERED = [
    ("profiles_event", "profiles_event_profile_id_cda6b68a", "profile_id"),
    ("profiles_event", "profiles_event_source_id_168f5aad", "source_id"),
    ("profiles_identity", "profiles_identity_profile_id_66c2e55a", "profile_id"),
    ("profiles_pendingmessage", "profiles_pendingmessage_source_id_63942925", "source_id"),
    ("profiles_profile", "profiles_profile_merged_into_id_f2e5a931", "merged_into_id"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0007_profile_refresh_queue"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='event',
                    name='profile',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='profiles.profile'),
                ),
                migrations.AlterField(
                    model_name='event',
                    name='source',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='events', to='profiles.source'),
                ),
                migrations.AlterField(
                    model_name='identity',
                    name='profile',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='identities', to='profiles.profile'),
                ),
                migrations.AlterField(
                    model_name='pendingmessage',
                    name='source',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='pending_messages', to='profiles.source'),
                ),
                migrations.AlterField(
                    model_name='profile',
                    name='merged_into',
                    field=models.ForeignKey(blank=True, db_index=False, help_text='Set when this profile was merged: its id keeps resolving to the survivor.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='merged_profiles', to='profiles.profile'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ("{column}")',
                )
                for table, index, column in COVERED
            ],
        ),
    ]
