"""Labels people read: acronyms written as acronyms ("IP address", "TCF string", "form URL"),
on every field and model of the project, wherever the admin or the API shows them."""

import re

from django.apps import apps

PROJECT_APPS = ("cdphub", "profiles", "crm", "audiences", "consent")
ACRONYMS = re.compile(r"\b(ip|tcf|url|urls|api|iab|crm|dmp|cdp|sms|utm|csv|json|http|dsar)\b")


def test_acronyms_in_labels_are_written_as_acronyms():
    wrong = []
    for model in apps.get_models():
        if model._meta.app_label not in PROJECT_APPS:
            continue
        names = [model._meta.verbose_name, model._meta.verbose_name_plural]
        names += [getattr(field, "verbose_name", "") for field in model._meta.get_fields()]
        wrong += [f"{model._meta.label}: {name}" for name in names if ACRONYMS.search(str(name))]
    assert wrong == []
