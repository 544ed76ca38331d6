"""The desk overview's chart, drawn here as SVG: a stacked bar a day, one colour per route.

The page carries the SVG itself (no script, nothing from elsewhere, within the pages' CSP:
colours are presentation attributes, not styles). The SVG is one image to assistive
technology, named by its title and described by its desc; the table under it on the page
holds every number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

WIDTH = 720
HEIGHT = 330
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 64, 56
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM
BAR_SHARE = 0.7  # of each day's slot; the rest is the gap between bars
MOST_TICKS = 5  # intervals on the vertical axis, at most
MOST_DATE_LABELS = 8
TEXT = "#1d1d1f"
GRID = "#d0d0d0"
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


@dataclass(frozen=True)
class Series:
    """One kind of bar segment: its key, its name in the legend, and its colour."""

    key: str
    label: str
    colour: str


def nice_scale(largest: int) -> tuple[int, int]:
    """The top of the vertical axis and its step: 1, 2 or 5 times a power of ten, at most
    MOST_TICKS steps, the top at or above `largest` (an empty chart still has a scale of 1)."""
    if largest <= 0:
        return 1, 1
    magnitude = 10 ** max(0, math.floor(math.log10(largest / MOST_TICKS)))
    for multiple in (1, 2, 5, 10):
        step = multiple * magnitude
        if math.ceil(largest / step) <= MOST_TICKS:
            return step * math.ceil(largest / step), step
    raise AssertionError("a step of 10 times the magnitude always fits")  # pragma: no cover


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def stacked_bars(
    days: Sequence[date],
    series: Sequence[Series],
    values: Sequence[Sequence[int]],
    *,
    chart_id: str,
    title: str,
    description: str,
    x_label: str,
    y_label: str,
    empty_text: str,
    date_label: Callable[[date], str],
    bar_title: Callable[[date, Sequence[int]], str],
) -> Markup:
    """An SVG of one stacked bar per day; `values[d][s]` is day d's count of series s."""
    top, step = nice_scale(max((sum(day) for day in values), default=0))
    slot = PLOT_WIDTH / max(1, len(days))
    bar_width = max(1.0, slot * BAR_SHARE)
    bottom = TOP + PLOT_HEIGHT

    def y_of(count: float) -> float:
        return bottom - count / top * PLOT_HEIGHT

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
        f' role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" class="chart" {FONT}>',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>',
    ]
    # The legend: two columns above the plot.
    for index, kind in enumerate(series):
        legend_x = LEFT + (index % 2) * (PLOT_WIDTH / 2)
        legend_y = 12 + (index // 2) * 20
        parts.append(f'<rect x="{_number(legend_x)}" y="{legend_y}" width="12" height="12" fill="{kind.colour}"/>')
        parts.append(f'<text x="{_number(legend_x + 18)}" y="{legend_y + 10}" fill="{TEXT}">{escape(kind.label)}</text>')
    # The vertical axis: grid lines at each step, with their numbers.
    for tick in range(0, top + 1, step):
        tick_y = _number(y_of(tick))
        parts.append(f'<line x1="{LEFT}" y1="{tick_y}" x2="{LEFT + PLOT_WIDTH}" y2="{tick_y}" stroke="{GRID}" stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 8}" y="{tick_y}" dy="4" text-anchor="end" fill="{TEXT}">{tick}</text>')
    middle = _number(TOP + PLOT_HEIGHT / 2)
    parts.append(
        f'<text x="14" y="{middle}" transform="rotate(-90 14 {middle})" text-anchor="middle" fill="{TEXT}">'
        f"{escape(y_label)}</text>"
    )
    # The bars, stacked from the axis up in the order of `series`, a white line between segments.
    label_every = math.ceil(len(days) / MOST_DATE_LABELS)
    for position, (day, counts) in enumerate(zip(days, values, strict=True)):
        bar_x = LEFT + position * slot + (slot - bar_width) / 2
        centre = _number(bar_x + bar_width / 2)
        if sum(counts):
            parts.append(f"<g><title>{escape(bar_title(day, counts))}</title>")
            height_so_far = 0
            for kind, count in zip(series, counts, strict=True):
                if not count:
                    continue
                segment_top = y_of(height_so_far + count)
                height = y_of(height_so_far) - segment_top
                parts.append(
                    f'<rect class="bar {kind.key}" x="{_number(bar_x)}" y="{_number(segment_top)}" width="{_number(bar_width)}"'
                    f' height="{_number(height)}" fill="{kind.colour}" stroke="#fff" stroke-width="1"/>'
                )
                height_so_far += count
            parts.append("</g>")
        # Dates under some bars, counted back from the last so that today always has its own.
        if (len(days) - 1 - position) % label_every == 0:
            parts.append(f'<line x1="{centre}" y1="{bottom}" x2="{centre}" y2="{bottom + 4}" stroke="{TEXT}"/>')
            parts.append(
                f'<text x="{centre}" y="{bottom + 18}" text-anchor="middle" fill="{TEXT}">{escape(date_label(day))}</text>'
            )
    parts.append(f'<line x1="{LEFT}" y1="{bottom}" x2="{LEFT + PLOT_WIDTH}" y2="{bottom}" stroke="{TEXT}" stroke-width="1"/>')
    parts.append(
        f'<text x="{_number(LEFT + PLOT_WIDTH / 2)}" y="{HEIGHT - 10}" text-anchor="middle" fill="{TEXT}">'
        f"{escape(x_label)}</text>"
    )
    if not any(sum(day) for day in values):
        parts.append(
            f'<text x="{_number(LEFT + PLOT_WIDTH / 2)}" y="{_number(TOP + PLOT_HEIGHT / 2)}" text-anchor="middle"'
            f' fill="{TEXT}" font-size="16">{escape(empty_text)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
