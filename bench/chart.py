"""docs/img/benchmarks.png: median req/s of every server, one panel per case, wsgistack highlighted."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here, and none wanted: the chart is a file
import matplotlib.pyplot as plt
from cases import LOADS
from matplotlib.ticker import FuncFormatter
from summary import Summary

WSGISTACK_COLOR = "#d9480f"
PEER_COLOR = "#868e96"
COLUMNS = 4


def _short(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 10_000 else f"{value:,.0f}"


def _tick(value: float) -> str:
    return f"{value / 1000:g}k" if value >= 10_000 else f"{value:g}"


def draw(summary: Summary, path: Path, subtitle: str) -> None:
    """One horizontal bar panel per load case plus one for memory; servers in the same order in each."""
    panels = [(load.title, load.key, "rps", "req/s (higher is better)") for load in LOADS]
    panels.append(("Memory after the Flask hello load", "flask_hello", "rss_load_kib",
                   "RSS of the process tree, MiB (lower is better)"))
    rows = -(-len(panels) // COLUMNS)
    names = [name for name in summary.servers if name not in summary.references]
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(4.2 * COLUMNS, 0.28 * len(names) * rows + 1.6 * rows),
                             sharey=True, squeeze=False)
    positions = list(range(len(names)))[::-1]  # first server at the top
    for ax, (title, case, metric, xlabel) in zip(axes.flat, panels, strict=False):
        values = [summary.value(name, case, metric) for name in names]
        if metric.endswith("_kib"):
            values = [v / 1024 if v is not None else None for v in values]
        colors = [WSGISTACK_COLOR if name in summary.wsgistack else PEER_COLOR for name in names]
        ax.barh(positions, [v or 0 for v in values], color=colors, height=0.7)
        top = max((v for v in values if v), default=1)
        for y, value in zip(positions, values, strict=True):
            label = "n/a" if value is None else _short(value)
            ax.text((value or 0) + top * 0.02, y, label, va="center", fontsize=7.5)
        ax.set_xlim(0, top * 1.28)
        ax.set_title(title, fontsize=9.5)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(axis="x", labelsize=7.5)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _tick(x)))
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    for ax in axes[:, 0]:
        ax.set_yticks(positions)
        ax.set_yticklabels(names, fontsize=8.5)
        for label in ax.get_yticklabels():
            if label.get_text() in summary.wsgistack:
                label.set_color(WSGISTACK_COLOR)
                label.set_fontweight("bold")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"wsgistack and peers, 2 workers each, median of repeats — {subtitle}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
