"""Charts as inline SVG, drawn here (pure: no I/O, no script): stacked bars of finished jobs per
bucket, succeeded at the bottom, then failed, then cancelled. Every bar has a <title>, which
browsers show on hover and screen readers read; colours come from the stylesheet's classes, so
they follow the dark mode, and the SVG needs no inline style (the Content-Security-Policy
forbids it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

STACK = ("succeeded", "failed", "cancelled")


def bars(series: Sequence[dict[str, Any]], *, label: str, tick: str = "%H:%M", width: int = 480,
         height: int = 120) -> Markup:
    """Stacked bars for ``series`` (dicts with ``start`` and a count per STACK status)."""
    n = max(len(series), 1)
    top = max([sum(b[s] for s in STACK) for b in series] + [1])
    plot = height - 18
    step = width / n
    gap = max(step * 0.15, 1)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
             f'preserveAspectRatio="none">',
             f'<line class="axis" x1="0" y1="{plot}" x2="{width}" y2="{plot}"/>']
    for i, bucket in enumerate(series):
        start = dt.datetime.fromisoformat(bucket["start"])
        x = i * step + gap / 2
        y = float(plot)
        total = sum(bucket[s] for s in STACK)
        words = ", ".join(f"{bucket[s]} {s}" for s in STACK)
        parts.append(f'<g><title>{escape(start.strftime("%Y-%m-%d %H:%M"))} UTC: {escape(words)}</title>')
        parts.append(f'<rect class="hit" x="{x:.1f}" y="0" width="{step - gap:.1f}" height="{plot}"/>')
        for status in STACK:
            h = bucket[status] / top * (plot - 16)  # room above for the scale
            if h > 0:
                y -= h
                parts.append(f'<rect class="bar {status}" x="{x:.1f}" y="{y:.1f}" width="{step - gap:.1f}" '
                             f'height="{max(h, 1):.1f}"/>')
        parts.append("</g>")
        if total == 0:
            parts.append(f'<rect class="bar none" x="{x:.1f}" y="{plot - 1}" width="{step - gap:.1f}" height="1"/>')
    for i in (0, n // 2, n - 1):
        if 0 <= i < len(series):
            start = dt.datetime.fromisoformat(series[i]["start"])
            anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
            x = 0 if i == 0 else width if i == n - 1 else (i + 0.5) * step
            parts.append(f'<text x="{x:.0f}" y="{height - 3}" text-anchor="{anchor}">'
                         f'{escape(start.strftime(tick))}</text>')
    parts.append(f"<text x=\"{width}\" y=\"10\" text-anchor=\"end\">max {top:,} per bar</text></svg>")
    return Markup("".join(parts))
