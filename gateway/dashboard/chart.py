"""Rejects per day per partner as an inline SVG (no JavaScript, no chart library)."""

from __future__ import annotations

import datetime as dt
from html import escape

from markupsafe import Markup

COLORS = ("#b3261e", "#1d4ed8", "#047857", "#7c3aed", "#b45309", "#0f766e", "#be185d", "#374151")


def rejects_chart(
    per_day: dict[str, dict[str, int]], first: dt.date, last: dt.date, *, width: int = 720
) -> Markup:
    # The last 62 days at most, counted back from the last (a period may span centuries).
    count = min(62, max(0, (last - first).days + 1))
    days = [last - dt.timedelta(days=n) for n in range(count - 1, -1, -1)]
    partners = sorted(per_day)
    if not partners:
        return Markup('<p class="empty">No rejected files in this period.</p>')
    peak = max(max(v.values()) for v in per_day.values()) or 1
    height, left, bottom = 160, 36, 28
    slot = (width - left - 8) / max(1, len(days))
    bar = max(1.0, (slot - 2) / len(partners))
    parts = [
        f'<svg role="img" aria-labelledby="chart-title" viewBox="0 0 {width} {height + bottom}" '
        f'class="chart"><title id="chart-title">Rejected files per day, per partner</title>',
        f'<line x1="{left}" y1="{height}" x2="{width}" y2="{height}" stroke="#555"/>',
        f'<text x="{left - 4}" y="12" text-anchor="end" class="axis">{peak}</text>',
        f'<text x="{left - 4}" y="{height}" text-anchor="end" class="axis">0</text>',
    ]
    for i, day in enumerate(days):
        x0 = left + i * slot
        key = day.isoformat()
        for j, name in enumerate(partners):
            n = per_day[name].get(key, 0)
            if not n:
                continue
            h = max(1.0, (height - 16) * n / peak)
            parts.append(
                f'<rect x="{x0 + 1 + j * bar:.1f}" y="{height - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{COLORS[j % len(COLORS)]}">'
                f"<title>{escape(name)} {key}: {n}</title></rect>"
            )
        if len(days) <= 14 or i % max(1, len(days) // 10) == 0:
            parts.append(
                f'<text x="{x0 + slot / 2:.1f}" y="{height + 16}" text-anchor="middle" '
                f'class="axis">{day.strftime("%m-%d")}</text>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<li><svg class="swatch" width="12" height="12" aria-hidden="true"><rect width="12" '
        f'height="12" fill="{COLORS[j % len(COLORS)]}"/></svg>'
        f"{escape(name)}: {sum(per_day[name].values())}</li>"
        for j, name in enumerate(partners)
    )
    return Markup("".join(parts) + f'<ul class="legend">{legend}</ul>')  # noqa: S704
