import django.contrib.postgres.indexes
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

NOTICE = """
  The event table holds events, so it was left as it is (a plain table): converting it takes a
  while. Run `manage.py partition_events` (it converts in batches while the hub keeps collecting),
  see the README, Running at scale."""


def seen_messages_fill(apps, schema_editor):
    """The message ids of the events received within the de-duplication window, which the
    event table's unique constraint de-duplicated until now."""
    schema_editor.execute(
        "INSERT INTO profiles_seenmessage (source_id, message_id, seen_at, timestamp) "
        "SELECT source_id, message_id, min(received_at), min(timestamp) FROM profiles_event "
        "WHERE received_at >= now() - make_interval(days => %s) "
        "GROUP BY source_id, message_id ON CONFLICT DO NOTHING",
        [settings.CDPHUB_EVENT_DEDUP_DAYS],
    )


def events_partition(apps, schema_editor):
    # The conversion the command runs, here at once where there is nothing to copy (a new
    # installation): the one code that builds the partitioned table from the plain one.
    from profiles.eventstore import events_partition

    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM profiles_event)")
        (has_events,) = cursor.fetchone()
    if has_events:
        print(NOTICE)
    else:
        events_partition()


def events_unpartition(apps, schema_editor):
    from profiles.eventstore import events_unpartition

    events_unpartition()


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0021_pending_message_request_id"),
    ]

    operations = [
        migrations.CreateModel(
            name="SeenMessage",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "source_id",
                        "message_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "source",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="profiles.source",
                    ),
                ),
                ("message_id", models.CharField(max_length=255)),
                ("seen_at", models.DateTimeField(help_text="When the message was first received.")),
                (
                    "timestamp",
                    models.DateTimeField(help_text="The time of the event stored for it."),
                ),
            ],
            options={
                "indexes": [
                    django.contrib.postgres.indexes.BrinIndex(
                        fields=["seen_at"], name="seen_message_seen_at_brin"
                    )
                ],
            },
        ),
        migrations.RunPython(seen_messages_fill, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="event",
            name="event_message_id_per_source",
        ),
        migrations.RunPython(events_partition, events_unpartition),
    ]
