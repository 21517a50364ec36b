from django.db import migrations

from consent.defaults import DEFAULT_PURPOSES, DEFAULT_RETENTION_DAYS, DEFAULT_TEXT_VERSION


def seed(apps, schema_editor):
    Purpose = apps.get_model("consent", "Purpose")
    ConsentText = apps.get_model("consent", "ConsentText")
    RetentionPolicy = apps.get_model("consent", "RetentionPolicy")
    for spec in DEFAULT_PURPOSES:
        fields = {key: value for key, value in spec.items() if key not in ("code", "text")}
        purpose, _ = Purpose.objects.get_or_create(code=spec["code"], defaults=fields)
        ConsentText.objects.get_or_create(
            purpose=purpose, version=DEFAULT_TEXT_VERSION, defaults={"text": spec["text"]}
        )
    for category, days in DEFAULT_RETENTION_DAYS.items():
        RetentionPolicy.objects.get_or_create(category=category, defaults={"retention_days": days})


def unseed(apps, schema_editor):
    """Removes only what was never used: purposes with consent records are kept."""
    Purpose = apps.get_model("consent", "Purpose")
    ConsentText = apps.get_model("consent", "ConsentText")
    RetentionPolicy = apps.get_model("consent", "RetentionPolicy")
    codes = [spec["code"] for spec in DEFAULT_PURPOSES]
    unused = Purpose.objects.filter(code__in=codes, records__isnull=True)
    ConsentText.objects.filter(purpose__in=unused, version=DEFAULT_TEXT_VERSION).delete()
    unused.delete()
    RetentionPolicy.objects.filter(category__in=DEFAULT_RETENTION_DAYS, last_run_at__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("consent", "0002_consentrecord_append_only")]

    operations = [migrations.RunPython(seed, unseed)]
