"""The OpenAPI schema generator: it documents what the API really answers."""

from __future__ import annotations

import re

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

from cdphub.api import PII_MASK_NOTE, ErrorSerializer, PiiMaskedSerializerMixin

ERROR_DESCRIPTIONS = {
    "400": "Invalid input: `errors` names each field (or query parameter) and what is wrong.",
    "401": "No valid API key or session.",
    "403": "The key lacks the scope (or the person the permission) this operation needs.",
    "404": "No such object, or not visible to the caller; for lists: an invalid cursor.",
    "409": "Other records still refer to this one: `errors` counts them by kind.",
    "415": "Unsupported request content type.",
}


# Where an API path's resource lives: /api/crm/contacts/ is "CRM: contacts"; the hub's own
# resources sit at the top (/api/profiles/ is "CDP: profiles").
APP_TAGS = {"crm": "CRM", "audiences": "DMP", "consent": "Consent"}
CRUD_SUMMARIES = {
    "list": "List {plural}",
    "create": "Create a {singular}",
    "retrieve": "Get a {singular}",
    "update": "Replace a {singular}",
    "partial_update": "Change a {singular}",
    "destroy": "Delete a {singular}",
}


class AutoSchema(SpectacularAutoSchema):
    """The schema says what the API answers: the error codes of every operation, list
    mechanics (filters, pagination) only where a list is returned, masked PII fields typed as
    the plain strings they are; operations grouped by resource, each with a summary."""

    def get_tags(self) -> list[str]:
        parts = [part for part in self.path.strip("/").split("/") if part]
        if len(parts) < 2 or parts[0] != "api":
            return super().get_tags()
        if parts[1] in APP_TAGS and len(parts) > 2:
            return [f"{APP_TAGS[parts[1]]}: {parts[2].replace('-', ' ')}"]
        return [f"CDP: {parts[1].replace('-', ' ')}"]

    def get_summary(self) -> str | None:
        """A line per operation: what CRUD does to which resource, else the first sentence
        of the handler's docstring, else its name and resource ("Verify the data subject
        request")."""
        action = getattr(self.view, "action", None)
        model = self.view_model()
        singular = str(model._meta.verbose_name) if model is not None else ""
        plural = str(model._meta.verbose_name_plural) if model is not None else ""
        if action in CRUD_SUMMARIES and model is not None:
            article = "an" if singular[:1] in "aeiou" else "a"
            summary = CRUD_SUMMARIES[action].format(singular=singular, plural=plural)
            return summary.replace(" a ", f" {article} ", 1)
        handler = getattr(self.view, action or self.method.lower(), None)
        text = " ".join((getattr(handler, "__doc__", None) or "").split())
        first = re.split(r"(?<=[.:;])\s", text, maxsplit=1)[0].rstrip(".:;")
        if first:
            return first[:120]
        name = (action or self.method.lower()).replace("_", " ").capitalize()
        if not model:
            return name
        return (
            f"{name} the {singular}" if getattr(self.view, "detail", False) else f"{name} {plural}"
        )

    def view_model(self):
        queryset = getattr(self.view, "queryset", None)
        if queryset is not None:
            return queryset.model
        serializer = getattr(self.view, "serializer_class", None)
        return getattr(getattr(serializer, "Meta", None), "model", None)

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None or not path.startswith("/api/"):
            return operation
        responses = operation.setdefault("responses", {})
        parameters = operation.get("parameters", [])
        body = "requestBody" in operation
        codes = ["401", "403"]
        # A write may always fail validation, even one without a body (a state change).
        if (
            body
            or method in ("POST", "PUT", "PATCH")
            or any(p["in"] == "query" for p in parameters)
        ):
            codes.append("400")
        if any(p["in"] == "path" or p["name"] == "cursor" for p in parameters):
            codes.append("404")
        if method == "DELETE":
            codes.append("409")
        if body:
            codes.append("415")
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code)
                responses[code]["description"] = ERROR_DESCRIPTIONS[code]
        if method == "GET" and any(p["in"] == "query" for p in parameters):
            # Answered by the web server before the request reaches the API (no JSON body).
            responses.setdefault("414", {"description": "The query string is too long."})
        return operation

    def get_filter_backends(self):
        # FilterBackend filters lists only: a detail route or action takes no list filters.
        if self.method != "GET" or getattr(self.view, "detail", False):
            return []
        return super().get_filter_backends()

    def _get_paginator(self):
        # Only GET lists are paginated; an action answering a list (merge, object) is a list.
        if self.method != "GET":
            return None
        return super()._get_paginator()

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # A field may answer in another shape than it takes (traits: typed to send, named
        # but not typed in answers, as they are kept as sent).
        answered = getattr(field, "answered_schema", None)
        if direction == "response" and answered is not None:
            schema = {**answered, **{k: schema[k] for k in ("readOnly",) if k in schema}}
        parent = getattr(field, "parent", None)
        if (
            direction == "response"
            and isinstance(parent, PiiMaskedSerializerMixin)
            and field.field_name in getattr(parent.Meta, "pii_fields", ())
        ):
            masked = {"type": "string", "description": PII_MASK_NOTE}
            if schema.get("nullable"):
                masked["nullable"] = True
            if schema.get("readOnly"):
                masked["readOnly"] = True
            if schema.get("description"):
                masked["description"] = f"{schema['description']} {PII_MASK_NOTE}"
            return masked
        return schema

    def _insert_field_validators(self, field, schema):
        # A masked value keeps no format, length or pattern of the real one.
        if not schema.get("description", "").endswith(PII_MASK_NOTE):
            super()._insert_field_validators(field, schema)
