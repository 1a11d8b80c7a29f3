"""The master's side: what dead processes counted (folded once, at the reap), the live slots added on top
at each scrape, and the Prometheus text (or OpenMetrics) made of them by prometheus_client.

The totals are keyed by series, not by process, so a scrape costs the same after ten thousand restarts as
after one: nothing per dead process is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from wsgistack.observe.metrics.families import COUNTER, GAUGE, HISTOGRAM, Family
from wsgistack.observe.metrics.slot import Series

if TYPE_CHECKING:
    from prometheus_client.core import Metric

# prometheus_client is imported where a scrape needs it, not at start: it costs 4 MB of RSS in each process
# (it brings http.server, wsgiref and more), and a server without --metrics-bind never scrapes

Merged = dict[tuple[Family, tuple[str, ...]], list[float]]


class Totals:
    """The counters and histograms of processes that are gone, summed by series (gauges die with them)."""

    def __init__(self) -> None:
        self.sums: Merged = {}

    def fold(self, series: Iterable[Series]) -> None:
        """Add a dead process's last numbers."""
        add_into(self.sums, series, gauges=False)

    def count(self, family: Family, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        """A counter the master keeps itself (a restart, by cause)."""
        found = self.sums.setdefault((family, labels), [0.0])
        found[0] += amount

    def with_live(self, live: Iterable[list[Series]]) -> Merged:
        """The totals plus every live process's numbers (gauges summed over the live ones)."""
        merged = {key: list(numbers) for key, numbers in self.sums.items()}
        for series in live:
            add_into(merged, series, gauges=True)
        return merged


def add_into(merged: Merged, series: Iterable[Series], gauges: bool) -> None:
    """Sum `series` into `merged`, skipping gauges unless asked."""
    for family, labels, numbers in series:
        if family.kind == GAUGE and not gauges:
            continue
        found = merged.get((family, labels))
        if found is None:
            merged[(family, labels)] = list(numbers)
        else:
            for i, number in enumerate(numbers):
                found[i] += number


def to_metrics(merged: Merged, families: Iterable[Family] | None = None,
               extra: dict[str, str] | None = None) -> list[Metric]:
    """prometheus_client metric families for the series of `families` (all that have series when None), in
    that order; `extra` labels (a program's name) go on every series."""
    grouped: dict[Family, list[tuple[tuple[str, ...], list[float]]]] = {}
    for (family, labels), numbers in merged.items():
        grouped.setdefault(family, []).append((labels, numbers))
    names, values = tuple((extra or {}).keys()), tuple((extra or {}).values())
    out: list[Metric] = []
    for family in (families if families is not None else sorted(grouped, key=lambda f: f.name)):
        # a family with no series yet is still listed (its type and help), so a dashboard knows it exists
        metric = _family(family, names + family.labels)
        for labels, numbers in sorted(grouped.get(family, ())):
            _add(metric, family, values + labels, numbers)
        out.append(metric)
    return out


def _family(family: Family, labels: tuple[str, ...]) -> Metric:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    if family.kind == COUNTER:
        return CounterMetricFamily(family.name, family.help, labels=labels)
    if family.kind == HISTOGRAM:
        return HistogramMetricFamily(family.name, family.help, labels=labels)
    return GaugeMetricFamily(family.name, family.help, labels=labels)


def _add(metric: Metric, family: Family, labels: tuple[str, ...], numbers: list[float]) -> None:
    from prometheus_client.utils import floatToGoString

    if family.kind != HISTOGRAM:
        metric.add_metric(list(labels), numbers[0])
        return
    buckets, running = [], 0.0
    for bound, count in zip((*family.bounds, float("inf")), numbers[:-1]):
        running += count
        buckets.append((floatToGoString(bound), running))
    metric.add_metric(list(labels), buckets, numbers[-1])


def new_metric(family: Family, extra: tuple[str, ...] = ()) -> Metric:
    """An empty prometheus_client family for `family`, with `extra` label names first."""
    return _family(family, extra + family.labels)


class _Collector:
    def __init__(self, collect: Callable[[], list[Metric]]):
        self.collect = collect


def render(collect: Callable[[], list[Metric]], accept: str = "") -> tuple[str, bytes]:
    """(content type, body) of a scrape: Prometheus text, or OpenMetrics when `accept` asks for it."""
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(collect))  # type: ignore[arg-type]  # a collector is anything with collect()
    encoder, content_type = choose_encoder(accept)
    return content_type, encoder(registry)
