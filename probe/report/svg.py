"""Charts as inline SVG: readable without a script, fetching nothing, every number also in the
markup (each mark's data-x, data-key and data-value, and a table beside the chart) so that a
reader, a screen reader or a test gets the figures the picture draws.

Three shapes: stacked bars, lines, and bars above and below an axis. Colours come from the
page's stylesheet through classes (c-KEY for a named series, l0..l7 for lines).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from probe.escaping import shown

WIDTH, HEIGHT = 720, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 12, 12, 26
LINE_CLASSES = 8


@dataclass(frozen=True)
class Series:
    key: str
    """What the series counts; the class c-KEY colours a named one."""
    label: str
    values: Sequence[int]
    """One value per x."""


def _text(value: object) -> Markup:
    return escape(shown(str(value)))


def _plot_width() -> int:
    return WIDTH - _LEFT - _RIGHT


def _plot_height() -> int:
    return HEIGHT - _TOP - _BOTTOM


def _slot(xs: Sequence[str]) -> float:
    return _plot_width() / max(len(xs), 1)


def _y(value: float, top: int) -> float:
    return _TOP + _plot_height() * (1 - value / top)


def _frame(name: str, title: str, xs: Sequence[str], top: int, body: list[str],
           baseline: float | None = None) -> Markup:
    """The chart's <svg>: its title, y scale (0 and `top`), x labels and `body`."""
    slot = _slot(xs)
    axis = _TOP + _plot_height() if baseline is None else baseline
    labels = [f'<text class="tick" x="{_LEFT + slot * (i + 0.5):.1f}" y="{HEIGHT - 8}" '
              f'text-anchor="middle">{_text(x)}</text>' for i, x in enumerate(xs)]
    return Markup(
        f'<svg class="chart" data-chart="{_text(name)}" role="img" viewBox="0 0 {WIDTH} '
        f'{HEIGHT}" width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f'<title>{_text(title)}</title>'
        f'<text class="tick" x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end">{top}</text>'
        f'<line class="axis" x1="{_LEFT}" y1="{axis:.1f}" x2="{WIDTH - _RIGHT}" '
        f'y2="{axis:.1f}"/>' + "".join(labels) + "".join(body) + "</svg>")


def _mark(shape: str, x: str, key: str, value: int, label: str, css: str,
          geometry: str) -> str:
    return (f'<{shape} class="{css}" data-x="{_text(x)}" data-key="{_text(key)}" '
            f'data-value="{value}" {geometry}><title>{_text(x)} {_text(label)}: {value}'
            f'</title></{shape}>')


def stacked(name: str, title: str, xs: Sequence[str], series: Sequence[Series]) -> Markup:
    """One bar per x, its series stacked bottom-up in order."""
    top = max([sum(s.values[i] for s in series) for i in range(len(xs))] + [1])
    slot = _slot(xs)
    width = min(slot * 0.7, 48)
    body = []
    for i, x in enumerate(xs):
        base = 0
        left = _LEFT + slot * (i + 0.5) - width / 2
        for s in series:
            value = s.values[i]
            y0, y1 = _y(base, top), _y(base + value, top)
            body.append(_mark("rect", x, s.key, value, s.label, f"c-{s.key}",
                              f'x="{left:.1f}" y="{y1:.1f}" width="{width:.1f}" '
                              f'height="{y0 - y1:.1f}"'))
            base += value
    return _frame(name, title, xs, top, body)


def lines(name: str, title: str, xs: Sequence[str], series: Sequence[Series]) -> Markup:
    """One line per series, a dot at each x."""
    top = max([v for s in series for v in s.values] + [1])
    slot = _slot(xs)
    body = []
    for n, s in enumerate(series):
        css = f"l{n % LINE_CLASSES}"
        points = [(_LEFT + slot * (i + 0.5), _y(v, top)) for i, v in enumerate(s.values)]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        dots = [_mark("circle", x, s.key, v, s.label, css,
                      f'cx="{px:.1f}" cy="{py:.1f}" r="3.5"')
                for x, v, (px, py) in zip(xs, s.values, points, strict=True)]
        body.append(f'<g class="series" data-key="{_text(s.key)}"><polyline class="{css}" '
                    f'points="{path}"/>' + "".join(dots) + "</g>")
    return _frame(name, title, xs, top, body)


def diverging(name: str, title: str, xs: Sequence[str], up: Series, down: Series) -> Markup:
    """Bars of `up` above a middle axis and of `down` below it, one pair per x."""
    top = max([*up.values, *down.values, 1])
    slot = _slot(xs)
    width = min(slot * 0.6, 40)
    middle = _TOP + _plot_height() / 2
    scale = _plot_height() / 2 / top
    body = []
    for i, x in enumerate(xs):
        left = _LEFT + slot * (i + 0.5) - width / 2
        rise, fall = up.values[i] * scale, down.values[i] * scale
        body.append(_mark("rect", x, up.key, up.values[i], up.label, f"c-{up.key}",
                          f'x="{left:.1f}" y="{middle - rise:.1f}" width="{width:.1f}" '
                          f'height="{rise:.1f}"'))
        body.append(_mark("rect", x, down.key, down.values[i], down.label, f"c-{down.key}",
                          f'x="{left:.1f}" y="{middle:.1f}" width="{width:.1f}" '
                          f'height="{fall:.1f}"'))
    return _frame(name, title, xs, top, body, baseline=middle)


def table(name: str, xs: Sequence[str], series: Sequence[Series]) -> Markup:
    """The chart's numbers as a table: a row per series, a column per x."""
    head = "".join(f'<th class="num">{_text(x)}</th>' for x in xs)
    rows = "".join(
        f'<tr data-key="{_text(s.key)}"><th scope="row">{_text(s.label)}</th>'
        + "".join(f'<td class="num">{v}</td>' for v in s.values) + "</tr>" for s in series)
    return Markup(f'<table class="numbers" data-table="{_text(name)}"><thead><tr><th></th>'
                  f'{head}</tr></thead><tbody>{rows}</tbody></table>')


def strip(name: str, title: str, cells: Sequence[tuple[str, str]]) -> Markup:
    """A row of squares, one per (x, key): a device's verdict in each sweep."""
    size, gap = 14, 3
    width = max(len(cells) * (size + gap), size)
    body = [_mark("rect", x, key, 1, key, f"c-{key}",
                  f'x="{i * (size + gap)}" y="0" width="{size}" height="{size}" rx="2"')
            for i, (x, key) in enumerate(cells)]
    return Markup(f'<svg class="strip" data-chart="{_text(name)}" role="img" '
                  f'viewBox="0 0 {width} {size}" width="{width}" height="{size}" '
                  f'xmlns="http://www.w3.org/2000/svg"><title>{_text(title)}</title>'
                  + "".join(body) + "</svg>")
