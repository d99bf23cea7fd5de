"""Plots and numbers as the Dagster UI shows them on an asset page.

The UI renders a markdown metadata value inline only while it is under 1,000 characters; a longer one (any
matplotlib PNG as a data URI: tens of kB) hides behind "[Show Markdown]". So an asset's headline plot is a small
SVG drawn here, as a percent-encoded data URI inside markdown under that limit (`inline_bars`, `inline_curves`),
and the full-resolution PNG stays beside it as a file path and a `[Show Markdown]` entry. Numbers go out as
`MetadataValue.int`/`float` (`numeric`), which Dagster's own "Plots" chart across materializations.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence
from urllib.parse import quote

import dagster as dg

INLINE_MD_LIMIT = 1000  # Dagster UI (MetadataEntry.tsx): markdown under this length renders in place
WIDTH, HEIGHT = 240, 64
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")


def _svg_md(body: str, alt: str, caption: str) -> str:
    svg = (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {WIDTH} {HEIGHT}' width='{WIDTH * 2}' "
           f"height='{HEIGHT * 2}'><rect width='{WIDTH}' height='{HEIGHT}' fill='#f6f7f9'/>{body}</svg>")
    uri = "data:image/svg+xml," + quote(svg, safe="=':/,.-")
    return f"![{alt}]({uri})" + (f"\n\n{caption}" if caption else "")


def _fit(build, n: int, minimum: int = 2) -> str:
    """The markdown from `build(points)` with as many points (of `n`) as fit under the inline limit."""
    points = n
    while True:
        md = build(points)
        if len(md) < INLINE_MD_LIMIT or points <= minimum:
            if len(md) >= INLINE_MD_LIMIT:
                raise ValueError(f"plot does not fit in {INLINE_MD_LIMIT} characters even with {points} points")
            return md
        points = max(minimum, points * 3 // 4)


def _resample(values: Sequence[float], n: int) -> list[float]:
    """`n` values spread over `values` (means of equal slices), so a long curve keeps its shape."""
    if len(values) <= n:
        return list(values)
    edges = [round(i * len(values) / n) for i in range(n + 1)]
    return [sum(values[a:b]) / (b - a) for a, b in zip(edges, edges[1:]) if b > a]


def _num(x: float) -> str:
    return f"{x:.3g}" if isinstance(x, float) and not float(x).is_integer() else f"{int(x):,}"


def inline_bars(values: Sequence[float], alt: str, caption: str = "") -> dg.MetadataValue:
    """Bars of `values` (a histogram's counts, a count per stage), scaled to the largest, as inline markdown."""
    values = [max(0.0, float(v)) for v in values]

    def build(n: int) -> str:
        vs = _resample(values, n) or [0.0]
        top = max(vs) or 1.0
        w = WIDTH / len(vs)
        path = "".join(f"V{HEIGHT - round((HEIGHT - 4) * v / top)}H{round((i + 1) * w)}" for i, v in enumerate(vs))
        return _svg_md(f"<path d='M0,{HEIGHT}{path}V{HEIGHT}Z' fill='{COLORS[0]}'/>", alt, caption)

    return dg.MetadataValue.md(_fit(build, len(values)))


def inline_curves(series: Mapping[str, Sequence[float]], alt: str, caption: str = "") -> dg.MetadataValue:
    """Line curves (loss, reward per step), all on one scale, as inline markdown; the caption should say what each
    colour is and the first/last values (the image has no axes: text is cheaper as markdown)."""
    series = {k: [float(v) for v in vs if v is not None and math.isfinite(float(v))] for k, vs in series.items()}
    series = {k: vs for k, vs in series.items() if vs}
    flat = [v for vs in series.values() for v in vs] or [0.0]
    low, high = min(flat), max(flat)
    span = (high - low) or 1.0

    def build(n: int) -> str:
        paths = []
        for color, vs in zip(COLORS, series.values()):
            vs = _resample(vs, n)
            step = WIDTH / max(1, len(vs) - 1)
            pts = "L".join(f"{round(i * step)},{round(2 + (HEIGHT - 4) * (high - v) / span)}" for i, v in enumerate(vs))
            paths.append(f"<path d='M{pts}' fill='none' stroke='{color}' stroke-width='2'/>")
        return _svg_md("".join(paths), alt, caption)

    return dg.MetadataValue.md(_fit(build, max((len(vs) for vs in series.values()), default=2)))


def legend(series: Mapping[str, Sequence[float]]) -> str:
    """'blue: loss 1.10 -> 0.22 (8 points)' per series, for an `inline_curves` caption."""
    names = ("blue", "orange", "green", "red")
    return "; ".join(f"{names[i]}: {k} {_num(vs[0])} -> {_num(vs[-1])} ({len(vs)} points)"
                     for i, (k, vs) in enumerate(series.items()) if vs)


def numeric(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Ints as `MetadataValue.int`, floats as `MetadataValue.float`, lists and dicts as JSON, the rest as is: the
    numbers are then numeric metadata, which the UI plots across materializations."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, bool):
            out[key] = dg.MetadataValue.bool(value)
        elif isinstance(value, int):
            out[key] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            out[key] = dg.MetadataValue.float(value)
        elif isinstance(value, (list, dict)):
            out[key] = dg.MetadataValue.json(value)
        else:
            out[key] = value
    return out
