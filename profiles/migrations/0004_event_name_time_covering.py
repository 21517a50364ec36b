"""Event (name, timestamp) index covering profile_id: segment rules on events in a window become
index-only scans. Built concurrently, so it can run on a live events table."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("profiles", "0003_rule_sql_functions")]

    operations = [
        AddIndexConcurrently(
            model_name="event",
            index=models.Index(
                fields=["name", "timestamp"], include=["profile"], name="event_name_time_profile"
            ),
        ),
        RemoveIndexConcurrently(model_name="event", name="event_name_time"),
    ]
