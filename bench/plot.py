"""Latency percentiles of every server as a small hand-written SVG (no plotting library needed)."""

import math
from array import array
from html import escape

from bench.stats import percentile

PERCENTILES = (50, 75, 90, 95, 99, 99.5, 99.9)
COLOURS = {"baseline": "#888888", "naive": "#bbbbbb", "ours-before": "#9ecae1", "ours": "#1f77b4",
           "ours-pg": "#2ca02c", "ours-pg×3": "#d62728", "ours-pg×3-rooms": "#ff7f0e"}
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 400, 70, 20, 40, 50


def _x(p: float) -> float:
    # Equal room for each "nine": 50, 90, 99, 99.9 sit evenly apart.
    span = -math.log10(1 - PERCENTILES[-1] / 100) - -math.log10(0.5)
    return LEFT + (-math.log10(1 - p / 100) + math.log10(0.5)) / span * (WIDTH - LEFT - RIGHT)


def percentile_curves(latencies_us: dict[str, array]) -> dict[str, list[float]]:
    """Milliseconds at each of PERCENTILES, per server."""
    curves = {}
    for kind, samples in latencies_us.items():
        ordered = sorted(samples)
        if ordered:
            curves[kind] = [percentile(ordered, p / 100) / 1000 for p in PERCENTILES]
    return curves


def svg(curves: dict[str, list[float]], title: str) -> str:
    top_ms = max((max(c) for c in curves.values()), default=1.0) or 1.0
    scale_top = 10 ** math.ceil(math.log10(top_ms))
    for step in (0.2, 0.5):
        if top_ms <= scale_top * step:
            scale_top *= step
            break
    plot_h = HEIGHT - TOP - BOTTOM

    def y(ms: float) -> float:
        return TOP + plot_h - ms / scale_top * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>']
    for i in range(6):
        ms = scale_top * i / 5
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(ms):.1f}" y2="{y(ms):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(ms) + 4:.1f}" text-anchor="end">{ms:g}</text>')
    for p in PERCENTILES:
        out.append(f'<line x1="{_x(p):.1f}" x2="{_x(p):.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#eee"/>')
        out.append(f'<text x="{_x(p):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">p{p:g}</text>')
    out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 10}" text-anchor="middle">percentile</text>')
    out.append(f'<text x="16" y="{TOP + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {TOP + plot_h / 2})">latency, ms</text>')
    for row, (kind, values) in enumerate(curves.items()):
        colour = COLOURS.get(kind, "black")
        points = " ".join(f"{_x(p):.1f},{y(v):.1f}" for p, v in zip(PERCENTILES, values))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{_x(p):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>' for p, v in zip(PERCENTILES, values)]
        out.append(f'<text x="{LEFT + 10}" y="{TOP + 16 + row * 16}" fill="{colour}">{escape(kind)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
