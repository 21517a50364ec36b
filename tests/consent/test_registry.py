"""Every model with personal-looking fields is covered by the personal data registry."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.db import models
from django.test.utils import isolate_apps

from consent import registry

PROJECT_APPS = ("cdphub", "profiles", "crm", "audiences", "consent")


# Fields that can hold copies of other rows' values (a journal of before-values, a conflict's
# reason, a job's error report quoting a cell, an export file): whatever their names.
COPY_HOLDING_FIELDS = (models.JSONField, models.TextField, models.FileField, models.BinaryField)


def personal_models() -> list[type[models.Model]]:
    found = []
    for model in apps.get_models():
        if model._meta.app_label not in PROJECT_APPS:
            continue
        copies = [f for f in model._meta.concrete_fields if isinstance(f, COPY_HOLDING_FIELDS)]
        if registry.personal_looking_fields(model) or copies:
            found.append(model)
    return found


@pytest.mark.parametrize("model", personal_models(), ids=lambda m: m._meta.label)
def test_model_with_personal_fields_is_registered(model):
    assert registry.is_covered(model), (
        f"{model._meta.label} has personal-looking fields "
        f"{registry.personal_looking_fields(model)}: register it in its app's privacy.py "
        "(registry.register(...) with find/erase, or registry.register_not_personal with a reason)"
    )


@isolate_apps("crm")
def test_the_check_catches_an_unregistered_model():
    class Newsletter(models.Model):
        email = models.EmailField()

        class Meta:
            app_label = "crm"

    assert registry.personal_looking_fields(Newsletter) == ["email"]
    assert not registry.is_covered(Newsletter)


def test_registering_a_field_that_does_not_exist_fails():
    with pytest.raises(ValueError, match="has no field"):
        registry.register(
            LogEntry, find=lambda s: None, erase=lambda q, s: 0, personal_fields=("emial",)
        )


def test_erasure_runs_dependents_before_profiles():
    order = [holder.label for holder in registry.holders()]
    assert order.index("crm.Contact") < order.index("profiles.Profile")
    assert order.index("consent.ConsentRecord") < order.index("profiles.Profile")
    assert order[-1] == "consent.DataSubjectRequest"


def test_an_exported_model_must_say_where_the_person_finds_it():
    with pytest.raises(ValueError, match="give it a category"):
        registry.register(LogEntry, find=lambda s: None, erase=lambda q, s: 0)


def test_every_exported_holder_has_a_category_and_a_title_a_person_reads():
    for holder in registry.holders():
        if holder.export:
            assert holder.category in registry.CATEGORIES, holder.label
            assert holder.title and "." not in holder.title, holder.label
