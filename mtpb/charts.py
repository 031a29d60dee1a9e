"""SVG charts and colours for the HTML report.

Drawn here in Python rather than by a script in the page: the charts show with scripts off, and the
tests can find them in the DOM. Every chart shares one viewBox; CSS scales it to the window.
"""
from __future__ import annotations

import math
from html import escape
from typing import Callable

from mtpb.formatting import fmt_params

# Tableau 10: distinct hues that stay apart for the common kinds of colour blindness.
RUN_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
              "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
MODE_COLORS = {"multi": "#4e79a7", "single": "#f28e2b", "chat": "#59a14f"}
OTHER_MODE_COLOR = "#777"
# Heatmap scale, 0% to 100%: pale to dark, readable without colour vision.
HEAT_STOPS = ((0.0, (255, 247, 236)), (0.5, (116, 169, 207)), (1.0, (8, 48, 107)))
W, H = 640, 300                # chart viewBox
PAD_L, PAD_R, PAD_T, PAD_B = 48, 12, 12, 44


def mode_color(mode: str) -> str:
    return MODE_COLORS.get(mode, OTHER_MODE_COLOR)


def heat_color(rate: float) -> tuple[str, str]:
    """(background, text colour) for a pass rate in percent."""
    t = min(max(rate / 100.0, 0.0), 1.0)
    for (t0, c0), (t1, c1) in zip(HEAT_STOPS, HEAT_STOPS[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            rgb = [round(a + (b - a) * f) for a, b in zip(c0, c1)]
            break
    light = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return "#%02x%02x%02x" % tuple(rgb), ("#000" if light > 140 else "#fff")


def legend(series: list[tuple[str, str]]) -> list[dict]:
    """(label, colour) pairs as the template's legend entries."""
    return [{"label": name, "color": color} for name, color in series]


def _svg(title: str, body: list[str]) -> str:
    return (f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(body)}</svg>')


def _y_axis(top: float = 100.0) -> tuple[list[str], Callable[[float], float]]:
    y = lambda v: PAD_T + (H - PAD_T - PAD_B) * (1 - v / top)  # noqa: E731
    out = []
    for tick in (0, 25, 50, 75, 100):
        out.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
                   f'<text class="tick" x="{PAD_L - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}%</text>')
    return out, y


def bar_chart(title: str, groups: list[str], series: list[tuple[str, str]], value) -> str:
    """Grouped bars: one group per x value, one bar per series (label, colour); value(g, s) in % or None."""
    body, y = _y_axis()
    width = (W - PAD_L - PAD_R) / max(len(groups), 1)
    bar = min(width * 0.8 / max(len(series), 1), 56.0)  # few bars: keep them bars, not slabs
    for gi, group in enumerate(groups):
        x0 = PAD_L + gi * width + (width - bar * len(series)) / 2
        for si, (name, color) in enumerate(series):
            v = value(group, name)
            if v is None:
                continue
            top = y(v)
            body.append(f'<rect x="{x0 + si * bar:.1f}" y="{top:.1f}" width="{max(bar - 1, 1):.1f}" '
                        f'height="{max(y(0) - top, 0.5):.1f}" fill="{color}"><title>{escape(name)}, '
                        f'{escape(str(group))}: {v:.1f}%</title></rect>')
        label = str(group) if len(str(group)) <= 14 else str(group)[:13] + "…"
        body.append(f'<text class="tick" x="{PAD_L + (gi + 0.5) * width:.1f}" y="{H - PAD_B + 16}" '
                    f'text-anchor="middle">{escape(label)}</text>')
    return _svg(title, body)


def size_chart(title: str, points: list[dict]) -> str:
    """Pass rate against parameters on a log axis; points with label, x, y, low, high, series, color.
    Points of one series are joined in size order (one line per mode)."""
    body, y = _y_axis()
    xs = [p["x"] for p in points]
    lo, hi = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    if hi == lo:  # all sizes an exact power of ten: widen so the points sit inside the axis
        lo, hi = lo - 1, hi + 1
    x = lambda v: PAD_L + 10 + (W - PAD_L - PAD_R - 20) * (math.log10(v) - lo) / (hi - lo)  # noqa: E731
    for e in range(lo, hi + 1):
        body.append(f'<line class="grid" x1="{x(10 ** e):.1f}" x2="{x(10 ** e):.1f}" y1="{PAD_T}" '
                    f'y2="{H - PAD_B}"/><text class="tick" x="{x(10 ** e):.1f}" y="{H - PAD_B + 16}" '
                    f'text-anchor="middle">{fmt_params(10 ** e)}</text>')
    body.append(f'<text class="tick" x="{(W + PAD_L) / 2}" y="{H - 8}" text-anchor="middle">'
                f'parameters (log scale)</text>')
    order = list(dict.fromkeys(p["series"] for p in points))
    shift = {s: (i - (len(order) - 1) / 2) * 6 for i, s in enumerate(order)}
    for series in order:
        line = sorted((p for p in points if p["series"] == series), key=lambda p: p["x"])
        if len(line) > 1:
            path = " ".join(f'{x(p["x"]) + shift[series]:.1f},{y(p["y"]):.1f}' for p in line)
            body.append(f'<polyline class="series" points="{path}" stroke="{line[0]["color"]}"/>')
    for p in points:
        # Each series is nudged sideways so two modes of one model size do not hide each other.
        cx = x(p["x"]) + shift[p["series"]]
        if not math.isnan(p["low"]):
            body.append(f'<line class="err" x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(p["low"]):.1f}" '
                        f'y2="{y(p["high"]):.1f}" stroke="{p["color"]}"/>')
        body.append(f'<circle cx="{cx:.1f}" cy="{y(p["y"]):.1f}" r="5" fill="{p["color"]}">'
                    f'<title>{escape(p["label"])}: {p["y"]:.1f}% [{p["low"]:.1f}, {p["high"]:.1f}]'
                    f'</title></circle>')
    return _svg(title, body)
