"""What the API accepts as input: request bodies (JSON, form, multipart) without NUL
characters, which PostgreSQL text and JSONB cannot store or compare. One check for
every string, at any depth of a JSON document (keys, values, list items), so no serializer
field, related-field lookup or filter has to remember it (``cdphub.api.ApiMiddleware`` applies
the same check to query strings).

Kept apart from ``cdphub.api``: DRF reads the parser classes from the settings while its views
module loads, which ``cdphub.api`` imports."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, parsers

NUL = "\x00"
NUL_MESSAGE = "NUL characters (\\u0000) are not allowed."


def nul_paths(data: Any, path: str = "") -> list[str]:
    """Where ``data`` (parsed JSON or form data: dicts, lists, strings) holds a NUL character,
    in keys, values or list items at any depth, as ``field``, ``field.key`` or ``field[2]``."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [(path, data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if NUL in value:
                found.append(where or "non_field_errors")
        elif isinstance(value, dict):
            for key, item in value.items():
                key = str(key)
                inner = f"{where}.{key}" if where else key
                if NUL in key:
                    found.append(where or "non_field_errors")
                stack.append((inner, item))
        elif isinstance(value, list | tuple):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return sorted(set(found))


def refuse_nul(data: Any) -> None:
    paths = nul_paths(data)
    if paths:
        raise exceptions.ValidationError({path: [NUL_MESSAGE] for path in paths})


def form_values(data) -> dict[str, Any]:
    """A form's fields as ``nul_paths`` names them: ``name``, or ``name[1]`` when repeated."""
    return {key: values[0] if len(values) == 1 else values for key, values in data.lists()}


class JSONParser(parsers.JSONParser):
    """JSON bodies without NUL characters (PostgreSQL text and JSONB cannot store them)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        refuse_nul(data)
        return data


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        refuse_nul(form_values(data))
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        result = super().parse(stream, media_type, parser_context)
        refuse_nul(form_values(result.data))
        return result
