"""The match-quality page's chart: daily volume as bars, key coverage as lines, one inline SVG.

Server-side, no script and no style attribute (the admin's CSP allows neither inline): only
SVG presentation attributes. Every text in it is escaped.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from crm_postback.operations.match_quality import MatchQuality

WIDTH = 720
HEIGHT = 220
LEFT = 44  # room for the events axis
RIGHT = 44  # room for the share axis
TOP = 12
BOTTOM = 30  # room for the dates
LINES = 3  # the heaviest components of the score are drawn
COLOURS = ("#c2185b", "#1565c0", "#2e7d32")
BAR = "#b0bec5"


def chart_lines(quality: MatchQuality) -> list[tuple[str, str, str]]:
    """(component key, label, colour) of the lines drawn: the heaviest components."""
    heaviest = sorted(quality.components, key=lambda c: -c.weight)[:LINES]
    return [(c.key, c.label, COLOURS[i]) for i, c in enumerate(heaviest)]


def chart_svg(quality: MatchQuality) -> Markup:
    days = quality.days
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(days), 1)
    most = max((day.events for day in days), default=0)
    scale = max(most, 1)
    base = TOP + plot_h
    title = (
        f"Events per day and key coverage, {days[0].day:%Y-%m-%d} to {days[-1].day:%Y-%m-%d}"
        if days
        else "No days"
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="mq-chart" viewBox="0 0 {WIDTH} '
        f'{HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#90a4ae"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" font-size="10" '
        f'fill="#546e7a">{most}</text>',
        f'<text x="{LEFT - 6}" y="{base}" text-anchor="end" font-size="10" fill="#546e7a">0</text>',
        f'<text x="{WIDTH - RIGHT + 6}" y="{TOP + 4}" font-size="10" fill="#546e7a">100%</text>',
        f'<text x="{WIDTH - RIGHT + 6}" y="{base}" font-size="10" fill="#546e7a">0%</text>',
    ]
    for index, day in enumerate(days):
        height = plot_h * day.events / scale
        x = LEFT + index * step
        parts.append(
            f'<rect class="mq-bar" data-day="{day.day.isoformat()}" data-events="{day.events}" '
            f'x="{x + step * 0.15:.1f}" y="{base - height:.1f}" width="{step * 0.7:.1f}" '
            f'height="{height:.1f}" fill="{BAR}"><title>{day.day:%Y-%m-%d}: {day.events} '
            "event(s)</title></rect>"
        )
        if index % 2 == 0 or len(days) <= 7:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{HEIGHT - 12}" text-anchor="middle" '
                f'font-size="10" fill="#546e7a">{day.day:%m-%d}</text>'
            )
    for key, label, colour in chart_lines(quality):
        points = [
            (LEFT + index * step + step / 2, base - plot_h * day.shares.get(key, 0.0), day)
            for index, day in enumerate(days)
            if day.events
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
            parts.append(
                f'<polyline class="mq-line" data-key="{escape(key)}" points="{path}" '
                f'fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for x, y, day in points:
            share = day.shares.get(key, 0.0)
            parts.append(
                f'<circle class="mq-point" data-key="{escape(key)}" cx="{x:.1f}" cy="{y:.1f}" '
                f'r="3" fill="{colour}"><title>{day.day:%Y-%m-%d}: {escape(label)} '
                f"{share:.0%}</title></circle>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
