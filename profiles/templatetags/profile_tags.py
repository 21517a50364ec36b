"""Template filters of the profile pages."""

from __future__ import annotations

import orjson
from django import template
from django.utils.html import format_html, format_html_join

register = template.Library()


# Deeper than this, the rest of a document is shown as JSON text: no page exhausts the stack.
READABLE_MAX_DEPTH = 16


@register.filter(name="readable")
def readable_table(value, depth: int = 0) -> str:
    """A JSON document as nested tables and lists a person reads, not as JSON."""
    if isinstance(value, dict | list) and depth >= READABLE_MAX_DEPTH:
        return format_html("<code>{}</code>", orjson.dumps(value).decode())
    if isinstance(value, dict):
        rows = format_html_join(
            "",
            '<tr><th scope="row">{}</th><td>{}</td></tr>',
            ((key, readable_table(item, depth + 1)) for key, item in value.items()),
        )
        return format_html('<table class="cdp-traits">{}</table>', rows)
    if isinstance(value, list):
        items = ((readable_table(item, depth + 1),) for item in value)
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", items))
    if value is None or value == "":
        return "-"
    return format_html("{}", value)
