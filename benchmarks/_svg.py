"""A horizontal bar chart as a standalone SVG file, without matplotlib.

One group of bars per workload, one bar per tool: its speedup over the serial reference. On the
log axis (the default) bars grow from 1x, to the right when faster than serial and to the left
when slower; on the linear axis they grow from 0.
"""

from __future__ import annotations

import math
from html import escape

__all__ = ["bar_chart"]

COLOURS = {"pmap": "#1f77b4", "peer": "#ff7f0e", "reference": "#7f7f7f"}
ROW, GAP, LABEL_W, PLOT_W, MARGIN = 16, 14, 300, 460, 20


def _ticks(low: float, high: float, *, log: bool) -> list[float]:
    """Powers of ten around [low, high] on the log axis; 0, step, 2 step... on the linear one."""
    if log:
        return [10.0**e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]
    step = 10.0 ** math.floor(math.log10(high))
    if high / step < 3:
        step /= 2
    return [i * step for i in range(math.ceil(high / step) + 1)]


def bar_chart(groups: list[tuple[str, list[tuple[str, float, str]]]], title: str, *, log: bool = True) -> str:
    """The SVG text. ``groups``: (workload heading, [(tool label, speedup, "pmap"|"peer"|...)])."""
    values = [v for _, bars in groups for _, v, _ in bars if v > 0]
    low, high = (min([*values, 1.0]), max([*values, 1.0])) if values else (0.5, 2.0)
    ticks = _ticks(low, high, log=log)
    lo, hi = (ticks[0], ticks[-1]) if log else (0.0, ticks[-1])
    scale = math.log10 if log else float

    def x(v: float) -> float:
        return LABEL_W + (scale(v) - scale(lo)) / ((scale(hi) - scale(lo)) or 1) * PLOT_W

    origin = x(1.0 if log else 0.0)
    rows = sum(len(bars) for _, bars in groups)
    height = 2 * MARGIN + 30 + rows * ROW + len(groups) * (ROW + GAP)
    width = LABEL_W + PLOT_W + 2 * MARGIN + 60
    head = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            'font-family="sans-serif" font-size="11">'
        ),
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{MARGIN}" y="{MARGIN}" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    top, y = MARGIN + 20, MARGIN + 30
    out: list[str] = []
    for heading, bars in groups:
        out.append(f'<text x="{MARGIN}" y="{y + 11}" font-weight="bold">{escape(heading)}</text>')
        y += ROW
        for label, value, kind in bars:
            out.append(f'<text x="{LABEL_W - 6}" y="{y + 11}" text-anchor="end">{escape(label)}</text>')
            if value > 0:
                end = x(min(max(value, lo), hi))
                left, w = min(origin, end), abs(end - origin)
                colour = COLOURS.get(kind, "#2ca02c")
                box = f'x="{left:.1f}" y="{y + 2}" width="{max(w, 1):.1f}" height="{ROW - 4}"'
                out.append(f'<rect {box} fill="{colour}"/>')
                out.append(f'<text x="{max(origin, end) + 4:.1f}" y="{y + 11}">{value:.3g}x</text>')
            y += ROW
        y += GAP
    grid = []  # drawn first, under the bars
    for t in ticks:
        tx = x(t)
        grid.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{y - GAP}" stroke="#ddd"/>')
        grid.append(f'<text x="{tx:.1f}" y="{y}" text-anchor="middle" fill="#555">{t:g}x</text>')
    axis = f'<line x1="{origin:.1f}" y1="{top}" x2="{origin:.1f}" y2="{y - GAP}" stroke="black"/>'
    return "\n".join([*head, *grid, *out, axis, "</svg>"]) + "\n"
