"""The CRM's bulk actions and the action bar's inputs (owner, tag, lifecycle stage, deal stage):
each calls a CRM service with the acting user."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.auth import get_user_model

from crm import services
from crm.models import (
    Contact,
    Stage,
)

# --- Action bar inputs: the value an action applies -------------------------------------------


def owner_field() -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username"),
        required=False,
        label="Owner",
    )


class OwnerActionForm(ActionForm):
    owner = owner_field()


class TaggableActionForm(OwnerActionForm):
    tag = forms.CharField(required=False, max_length=80, label="Tag")


class ContactActionForm(TaggableActionForm):
    lifecycle_stage = forms.ChoiceField(
        choices=[("", "---------"), *Contact.LifecycleStage.choices],
        required=False,
        label="Lifecycle",
    )


class DealActionForm(OwnerActionForm):
    stage = forms.ModelChoiceField(
        Stage.objects.select_related("pipeline"), required=False, label="Stage"
    )


def action_value(modeladmin, request, name: str):
    """The cleaned action-bar value, or None after telling the user it is missing."""
    form = modeladmin.action_form(request.POST)
    form.fields["action"].choices = modeladmin.get_action_choices(request)
    value = form.cleaned_data.get(name) if form.is_valid() else None
    if value in (None, ""):
        label = form.fields[name].label
        modeladmin.message_user(
            request, f"Choose a {label.lower()} next to the action first.", messages.ERROR
        )
        return None
    return value


@admin.action(description="Assign the chosen owner", permissions=["change"])
def assign_owner(modeladmin, request, queryset):
    owner = action_value(modeladmin, request, "owner")
    if owner is not None:
        count = services.records_assign_owner(queryset=queryset, owner=owner, actor=request.user)
        modeladmin.message_user(request, f"{count} record(s) now owned by {owner}.")


@admin.action(description="Add the typed tag", permissions=["change"])
def add_tag(modeladmin, request, queryset):
    name = action_value(modeladmin, request, "tag")
    if name is not None:
        tag, count = services.records_add_tag(queryset=queryset, name=name, actor=request.user)
        modeladmin.message_user(request, f"Tag {tag} added to {count} record(s).")


@admin.action(description="Change lifecycle stage", permissions=["change"])
def change_lifecycle(modeladmin, request, queryset):
    stage = action_value(modeladmin, request, "lifecycle_stage")
    if stage is not None:
        count = services.contacts_change_lifecycle(
            queryset=queryset, lifecycle_stage=stage, actor=request.user
        )
        modeladmin.message_user(request, f"{count} contact(s) moved to {stage}.")


@admin.action(description="Move to the chosen stage", permissions=["change"])
def change_stage(modeladmin, request, queryset):
    stage = action_value(modeladmin, request, "stage")
    if stage is not None:
        count = services.deals_move_to_stage(queryset=queryset, stage=stage, actor=request.user)
        modeladmin.message_user(request, f"{count} deal(s) moved to {stage}.")
