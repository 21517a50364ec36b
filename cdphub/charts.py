"""Small server-side SVG charts for the admin: no JavaScript library, no CDN, works offline."""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Colour-blind friendly palette (Okabe-Ito), readable on white and on the dark admin theme.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]


def stacked_bar_chart(
    columns: list[tuple[str, dict[str, int]]],
    *,
    title: str,
    width: int = 640,
    height: int = 180,
) -> SafeString:
    """Stacked bars, one column per label (e.g. a day), one colour per series (e.g. a source)."""
    series = sorted({name for _, values in columns for name in values})
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    peak = max((sum(values.values()) for _, values in columns), default=0) or 1
    plot_height = height - 24
    bar_width = width / max(len(columns), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="none" width="100%" height="{height}">',
        f"<title>{escape(title)}</title>",
    ]
    for index, (label, values) in enumerate(columns):
        x = index * bar_width
        y = plot_height
        for name in series:
            value = values.get(name, 0)
            if not value:
                continue
            bar_height = value / peak * (plot_height - 4)
            y -= bar_height
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_width - 2, 1):.1f}" '
                f'height="{bar_height:.1f}" fill="{colours[name]}">'
                f"<title>{escape(label)} {escape(name)}: {value:,}</title></rect>"
            )
        if (len(columns) - 1 - index) % 7 == 0:  # every 7th day, ending on the latest
            parts.append(
                f'<text x="{x + bar_width / 2:.1f}" y="{height - 6}" font-size="10" '
                f'text-anchor="{"end" if index == len(columns) - 1 else "middle"}" '
                f'fill="currentColor">{escape(label[5:])}</text>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{colours[name]}"></span>{escape(name)}</li>'
        for name in series
    )
    return mark_safe("".join(parts) + f'<ul class="legend">{legend}</ul>')  # noqa: S308 - escaped above


def meter(fraction: float, *, label: str) -> SafeString:
    """A horizontal bar for a share (0..1), with its percentage as text for screen readers."""
    percent = max(0.0, min(fraction, 1.0)) * 100
    return mark_safe(  # noqa: S308 - only numbers and an escaped label
        f'<span class="meter" role="meter" aria-valuenow="{percent:.0f}" aria-valuemin="0" '
        f'aria-valuemax="100" aria-label="{escape(label)}"><span style="width:{percent:.1f}%">'
        f"</span></span> {percent:.0f}%"
    )
