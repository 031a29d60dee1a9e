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
            cx = x0 + si * bar + bar / 2
            if v is None:   # no run: a hollow mark on the axis, never a bar of any height
                body.append(f'<text class="no-run" x="{cx:.1f}" y="{y(0) - 4:.1f}" text-anchor="middle">×'
                            f'<title>{escape(name)}, {escape(str(group))}: no run</title></text>')
                continue
            top = y(v)
            body.append(f'<rect x="{x0 + si * bar:.1f}" y="{top:.1f}" width="{max(bar - 1, 1):.1f}" '
                        f'height="{max(y(0) - top, 0.5):.1f}" fill="{color}"><title>{escape(name)}, '
                        f'{escape(str(group))}: {v:.1f}%</title></rect>')
            if v < 0.05:    # a measured 0%: a solid tick and its figure, unlike the absent bar above
                body.append(f'<rect class="zero" x="{x0 + si * bar:.1f}" y="{y(0) - 3:.1f}" '
                            f'width="{max(bar - 1, 1):.1f}" height="3" fill="{color}"/>'
                            f'<text class="tick zero-label" x="{cx:.1f}" y="{y(0) - 6:.1f}" '
                            f'text-anchor="middle">0</text>')
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


def line_chart(title: str, xs: list[int], series: list[tuple[str, str, dict]], x_label: str) -> str:
    """Lines over integer x values (pass@k against k): series are (label, colour, {x: y in %})."""
    body, y = _y_axis()
    lo, hi = min(xs), max(xs)
    if hi == lo:   # one k (n = 1): the point in the middle, not on the axis
        lo, hi = lo - 1, hi + 1
    span = hi - lo
    x = lambda v: PAD_L + 16 + (W - PAD_L - PAD_R - 32) * (v - lo) / span  # noqa: E731
    step = max(1, round(span / 10))
    for v in range(max(lo, min(xs)), hi + 1, step):
        if v > max(xs):
            break
        body.append(f'<text class="tick" x="{x(v):.1f}" y="{H - PAD_B + 16}" text-anchor="middle">{v}</text>')
    body.append(f'<text class="tick" x="{(W + PAD_L) / 2}" y="{H - 8}" text-anchor="middle">{escape(x_label)}</text>')
    for label, color, values in series:
        pts = sorted(values.items())
        if len(pts) > 1:
            path = " ".join(f"{x(k):.1f},{y(v):.1f}" for k, v in pts)
            body.append(f'<polyline class="series" points="{path}" stroke="{color}"/>')
        for k, v in pts:
            body.append(f'<circle cx="{x(k):.1f}" cy="{y(v):.1f}" r="3.5" fill="{color}">'
                        f'<title>{escape(label)}: {escape(x_label)} {k}: {v:.1f}%</title></circle>')
    return _svg(title, body)


def scatter_chart(title: str, points: list[dict], x_label: str) -> str:
    """Pass rate (%) against a positive x on a log axis (prompt perplexity); points with label, x, y,
    color. The axis spans the data's own decades."""
    body, y = _y_axis()
    xs = [p["x"] for p in points if p["x"] > 0]
    if not xs:
        return _svg(title, body)
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    if hi - lo < 0.2:
        lo, hi = lo - 0.1, hi + 0.1
    x = lambda v: PAD_L + 10 + (W - PAD_L - PAD_R - 20) * (math.log10(v) - lo) / (hi - lo)  # noqa: E731
    for t in _log_ticks(lo, hi):
        body.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{PAD_T}" y2="{H - PAD_B}"/>'
                    f'<text class="tick" x="{x(t):.1f}" y="{H - PAD_B + 16}" text-anchor="middle">{t:g}</text>')
    body.append(f'<text class="tick" x="{(W + PAD_L) / 2}" y="{H - 8}" text-anchor="middle">{escape(x_label)}</text>')
    for p in points:
        if p["x"] > 0:
            paint = (f'fill="#fff" stroke="{p["color"]}" stroke-width="1.5"' if p.get("hollow")
                     else f'fill="{p["color"]}"')
            body.append(f'<circle class="dot" cx="{x(p["x"]):.1f}" cy="{y(p["y"]):.1f}" r="4" {paint}>'
                        f'<title>{escape(p["label"])}: perplexity {p["x"]:.2f}, pass rate {p["y"]:.1f}%</title></circle>')
    return _svg(title, body)


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks between 10**lo and 10**hi, at most about eight of them."""
    out = []
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            t = m * 10 ** e
            if 10 ** lo <= t <= 10 ** hi:
                out.append(t)
    return out if len(out) <= 8 else out[::max(1, len(out) // 8)]
