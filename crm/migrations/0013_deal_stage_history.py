"""Deal stage history. Deals already moved in bulk keep those moves (read from the audit trail,
where they were recorded until now); every deal entered its stage when it was last moved, else
when it was created."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


HISTORY_FROM_AUDIT = """
INSERT INTO crm_dealstagechange (deal_id, from_stage_id, to_stage_id, changed_at, changed_by_id)
SELECT deal.id, NULL, stage.id, entry.created_at, entry.actor_id
FROM cdphub_auditentry entry
JOIN crm_deal deal ON deal.id::text = entry.object_id
JOIN crm_stage stage ON stage.id::text = substring(entry.note FROM '#([0-9]+)$')
WHERE entry.action = 'stage.move' AND entry.object_type = 'crm.deal';

UPDATE crm_deal deal
SET stage_entered_at = coalesce(
    (SELECT max(change.changed_at) FROM crm_dealstagechange change
     WHERE change.deal_id = deal.id AND change.to_stage_id = deal.stage_id),
    deal.created_at
);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0012_web_forms"),
        ("cdphub", "0002_audit_entries"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="deal",
            name="stage_entered_at",
            field=models.DateTimeField(
                default=django.utils.timezone.now,
                help_text="When the deal entered its current stage.",
            ),
        ),
        migrations.CreateModel(
            name="DealStageChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "changed_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "deal",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="stage_changes",
                        to="crm.deal",
                    ),
                ),
                (
                    "from_stage",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="crm.stage",
                    ),
                ),
                (
                    "to_stage",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="crm.stage",
                    ),
                ),
            ],
            options={
                "ordering": ["-changed_at"],
                "indexes": [
                    models.Index(fields=["deal", "-changed_at"], name="deal_stage_change_deal")
                ],
            },
        ),
        migrations.RunSQL(HISTORY_FROM_AUDIT, migrations.RunSQL.noop),
    ]
