"""A report's score timeline as a small inline SVG chart: no script, no library, nothing fetched.

One line per class (the detected class first and thickest), time in seconds from the detection
along the bottom (the detection at 0 as a dashed line, the deadline as a red one when known),
scores 0 to 1 up the side. Every value is drawn from numbers only; labels are escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

WIDTH, HEIGHT = 480, 140
_LEFT, _RIGHT, _TOP, _BOTTOM = 30, 10, 10, 22
# Colour-blind-safe (Okabe-Ito); the detected class takes the first.
_COLOURS = ("#d55e00", "#0072b2", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")


def timeline_svg(points: Sequence[Mapping[str, Any]], class_key: str, deadline_s: float | None = None) -> str:
    """The chart of ``points`` (``t``, ``class``, ``score``), or a short note when there are none.

    ``deadline_s``: when the report was due, in seconds from the detection.
    """
    series: dict[str, list[tuple[float, float]]] = {}
    for point in points:
        try:
            t, score = float(point["t"]), float(point["score"])
        except (KeyError, TypeError, ValueError):
            continue
        series.setdefault(str(point.get("class") or class_key), []).append((t, min(1.0, max(0.0, score))))
    if not series:
        return "<em>no scores</em>"
    times = [t for line in series.values() for t, _ in line] + [0.0] + ([deadline_s] if deadline_s is not None else [])
    start, end = min(times), max(times)
    span = end - start or 1.0
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(t: float) -> float:
        return round(_LEFT + (t - start) / span * plot_w, 1)

    def y(score: float) -> float:
        return round(_TOP + (1.0 - score) * plot_h, 1)

    order = sorted(series, key=lambda key: key != class_key)
    lines, legend = [], []
    for index, key in enumerate(order):
        colour = _COLOURS[index % len(_COLOURS)]
        path = " ".join(f"{x(t)},{y(s)}" for t, s in sorted(series[key]))
        width = 2 if key == class_key else 1
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{path}"/>')
        legend.append(f'<tspan fill="{colour}">■ {html.escape(key)}</tspan>')
    marks = [f'<line x1="{x(0.0)}" y1="{_TOP}" x2="{x(0.0)}" y2="{_TOP + plot_h}" stroke="#555" stroke-dasharray="3,3"/>']
    if deadline_s is not None:
        marks.append(f'<line x1="{x(deadline_s)}" y1="{_TOP}" x2="{x(deadline_s)}" y2="{_TOP + plot_h}" stroke="#b00"/>')
    axes = (
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_LEFT + plot_w}" y2="{_TOP + plot_h}" stroke="#999"/>'
        f'<text x="2" y="{_TOP + 8}" font-size="9">1.0</text><text x="2" y="{_TOP + plot_h}" font-size="9">0</text>'
        f'<text x="{_LEFT}" y="{HEIGHT - 4}" font-size="9">{start:+.0f} s</text>'
        f'<text x="{_LEFT + plot_w}" y="{HEIGHT - 4}" font-size="9" text-anchor="end">{end:+.0f} s</text>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 4}" font-size="9" text-anchor="middle">{" ".join(legend)}</text>'
    )
    label = html.escape(f"score timeline of {', '.join(order)}, {start:+.0f} s to {end:+.0f} s from the detection")
    return (
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">'
        + axes + "".join(marks) + "".join(lines) + "</svg>"
    )
