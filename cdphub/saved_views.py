"""Saved views of admin lists: a name for a list's filters, search, ordering and columns,
kept for its owner or shared with everyone who may open the list. The admin's changelists
(``cdphub.admin_mixins.SavedViewsMixin``) offer them; this module holds the rules."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import QueryDict

from cdphub.audit import audit_record
from cdphub.models import SavedView

# The query parameter that names the saved view a list is shown through. Underscored like the
# admin's own (_popup, _to_field), so no list filter can be named the same.
VIEW_VAR = "_view"
# What a list's URL may carry that is not part of a view: the page, the admin's error flag,
# popups, and the view itself.
NOT_SAVED = ("p", "e", "_popup", "_to_field", "_changelist_filters", VIEW_VAR)
MAX_QUERY = SavedView._meta.get_field("query").max_length
MAX_NAME = SavedView._meta.get_field("name").max_length


def views_visible(user, list_label: str) -> QuerySet[SavedView]:
    """The views of one list that ``user`` may apply: their own and the shared ones."""
    return SavedView.objects.filter(
        Q(owner=user) | Q(shared=True), list_label=list_label
    ).select_related("owner")


def view_find(user, list_label: str, view_id) -> SavedView | None:
    try:
        return views_visible(user, list_label).get(pk=int(view_id))
    except (TypeError, ValueError, SavedView.DoesNotExist):
        return None


def view_query(query_string: str) -> str:
    """A list's query string as a view keeps it: its filters, search and ordering."""
    params = QueryDict(query_string, mutable=True)
    for name in NOT_SAVED:
        params.pop(name, None)
    return params.urlencode()


def view_columns(view: SavedView, available: Sequence[str]) -> list[str]:
    """The view's columns that the list still has, in the view's order; the list's own when
    the view chose none or none of them is left."""
    chosen = [name for name in view.columns if name in available]
    return chosen or list(available)


def view_save(
    user,
    *,
    list_label: str,
    name: str,
    query_string: str,
    columns: Sequence[str],
    available: Sequence[str],
    shared: bool,
) -> SavedView:
    """Save (or, under a name the owner already uses for this list, replace) a view.
    Raises ``ValidationError`` naming the field at fault; nothing is saved then."""
    name = (name or "").strip()
    query = view_query(query_string)
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Give the view a name."
    elif len(name) > MAX_NAME:
        errors["name"] = f"A view's name has at most {MAX_NAME} characters."
    unknown = [column for column in columns if column not in available]
    if unknown:
        errors["columns"] = f"This list has no column {', '.join(unknown)}."
    elif not columns:
        errors["columns"] = "Choose at least one column."
    if len(query) > MAX_QUERY:
        errors["query"] = f"The filters are too long to save ({len(query)} > {MAX_QUERY})."
    if errors:
        raise ValidationError(errors)
    # The list's own columns, all in their order, are saved as "the list's own": a column
    # added to the list later then shows in the view too.
    saved_columns = [] if list(columns) == list(available) else list(columns)
    with transaction.atomic():
        view, created = SavedView.objects.update_or_create(
            owner=user,
            list_label=list_label,
            name=name,
            defaults={"query": query, "columns": saved_columns, "shared": shared},
        )
        verb = "create" if created else "update"
        audit_record(
            actor=user,
            action=f"saved_view.{verb}",
            obj=view,
            note=f"{list_label}; {'shared' if shared else 'private'}; "
            f"{len(saved_columns) or 'all'} columns",
        )
    return view


def view_delete(user, view: SavedView) -> None:
    """Only the owner (or a superuser) deletes a view; a shared view is gone for everyone."""
    if view.owner_id != user.pk and not user.is_superuser:
        raise ValidationError("Only the person who saved this view can delete it.")
    with transaction.atomic():
        audit_record(actor=user, action="saved_view.delete", obj=view, note=view.list_label)
        view.delete()
