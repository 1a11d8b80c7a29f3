"""From raw run records to medians, ratios to the best peer, and the goal checks."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# Whether a bigger value of a metric is better; ratios and "best" follow it.
HIGHER_IS_BETTER = {
    "rps": True,
    "p50_ms": False,
    "p99_ms": False,
    "rss_idle_kib": False,
    "rss_load_kib": False,
    "slowloris_ratio": True,
}


@dataclass(frozen=True)
class Goal:
    """A target for wsgistack's best worker class: a factor of a peer's median, or of a fixed figure."""

    text: str
    case: str
    metric: str
    factor: float
    peer: str | None = None
    fixed: float | None = None
    server: str | None = None  # judge this contender rather than wsgistack's best class


DEFAULTS, PEER_DEFAULTS = "wsgistack defaults", "granian defaults"


GOALS: tuple[Goal, ...] = (
    Goal("Plain hello c64 ≥ 0.5× granian", "plain", "rps", 0.5, peer="granian"),
    Goal("Plain hello c64 ≥ 1.1× uWSGI", "plain", "rps", 1.1, peer="uwsgi"),
    Goal("Flask hello c64 ≥ 1.0× granian", "flask_hello", "rps", 1.0, peer="granian"),
    Goal("Flask 20 ms I/O c64 ≥ 0.95 × 3,200 req/s", "flask_io_c64", "rps", 0.95, fixed=3200.0),
    Goal("Flask 20 ms I/O c256 ≥ 1.0× granian", "flask_io_c256", "rps", 1.0, peer="granian"),
    Goal("p99 latency, Flask hello c64 ≤ granian's", "flask_hello", "p99_ms", 1.0, peer="granian"),
    Goal("Hello with 200 slowloris ≥ 0.9× own throughput without", "slowloris", "slowloris_ratio", 0.9,
         fixed=1.0),
    Goal("RSS master + 2 workers after load ≤ 1.0× gunicorn sync", "flask_hello", "rss_load_kib", 1.0,
         peer="gunicorn sync"),
    # issue 15: what a user gets without tuning (`serve APP -w 2`), against granian as its user gets it
    Goal("Defaults: plain hello c64 ≥ 0.5× granian's defaults", "plain", "rps", 0.5, peer=PEER_DEFAULTS,
         server=DEFAULTS),
    Goal("Defaults: plain hello c64 ≥ 1.1× uWSGI", "plain", "rps", 1.1, peer="uwsgi", server=DEFAULTS),
    Goal("Defaults: Flask hello c64 ≥ 1.2× granian's defaults", "flask_hello", "rps", 1.2, peer=PEER_DEFAULTS,
         server=DEFAULTS),
    Goal("Defaults: Flask JSON 50 KiB c64 ≥ 1.0× granian's defaults", "flask_json", "rps", 1.0,
         peer=PEER_DEFAULTS, server=DEFAULTS),
    Goal("Defaults: Flask 20 ms I/O c64 ≥ 0.95 × 3,200 req/s", "flask_io_c64", "rps", 0.95, fixed=3200.0,
         server=DEFAULTS),
    Goal("Defaults: Flask 20 ms I/O c256 ≥ 0.95 × 12,800 req/s", "flask_io_c256", "rps", 0.95, fixed=12800.0,
         server=DEFAULTS),
)


@dataclass(frozen=True)
class GoalCheck:
    """One goal against this run: the best wsgistack class, its figure, the reference, and the verdict."""

    goal: Goal
    best_class: str | None
    value: float | None
    reference: float | None
    ratio: float | None
    met: bool | None


class Summary:
    """Medians per server per case over the repeats, and comparisons drawn from them."""

    def __init__(self, records: list[dict], servers: list[str], wsgistack: list[str],
                 single_process: list[str] = (), references: list[str] = ()) -> None:
        self.records = records
        self.servers = servers
        self.wsgistack = wsgistack
        # yardsticks (the 20 ms case's floor): in the tables, never a peer
        self.references = [name for name in servers if name in references]
        self.peers = [name for name in servers if name not in wsgistack and name not in references]
        self.single_process = list(single_process)

    def peers_for(self, metric: str) -> list[str]:
        """The peers a metric compares with: for memory, only those that run a master and workers too."""
        if metric.startswith("rss_"):
            return [name for name in self.peers if name not in self.single_process]
        return self.peers

    def ok(self, server: str, case: str) -> list[dict]:
        """The records of a server and case that measured something."""
        return [r for r in self.records
                if r["server"] == server and r["case"] == case and not r.get("error") and "rps" in r]

    def value(self, server: str, case: str, metric: str) -> float | None:
        """The median of a metric over the repeats; None when nothing was measured."""
        values = [r[metric] for r in self.ok(server, case) if r.get(metric) is not None]
        return statistics.median(values) if values else None

    def errors(self, server: str, case: str) -> int:
        """Non-2xx responses and socket errors, summed over the repeats."""
        return sum(r.get("non_2xx", 0) + r.get("socket_errors", 0) for r in self.ok(server, case))

    def failures(self, server: str, case: str) -> list[str]:
        """Why runs of this server and case measured nothing."""
        return [r["error"] for r in self.records
                if r["server"] == server and r["case"] == case and r.get("error")]

    def best(self, names: list[str], case: str, metric: str) -> tuple[str | None, float | None]:
        """The best of some servers on a metric (highest or lowest, as the metric wants)."""
        scored = [(name, v) for name in names if (v := self.value(name, case, metric)) is not None]
        if not scored:
            return None, None
        pick = max if HIGHER_IS_BETTER[metric] else min
        return pick(scored, key=lambda item: item[1])

    def ratio_to_best_peer(self, server: str, case: str, metric: str) -> float | None:
        """This server's median over the best peer's (below 1 is better for lower-is-better metrics)."""
        mine = self.value(server, case, metric)
        _, best = self.best(self.peers_for(metric), case, metric)
        if mine is None or not best:
            return None
        return mine / best

    def check(self, goal: Goal) -> GoalCheck:
        """Judge one goal with wsgistack's best class on that metric."""
        candidates = [goal.server] if goal.server else self.wsgistack
        best_class, value = self.best(candidates, goal.case, goal.metric)
        if goal.fixed is not None:
            reference = goal.fixed
        else:
            reference = self.value(goal.peer or "", goal.case, goal.metric)
        if value is None or not reference:
            return GoalCheck(goal, best_class, value, reference, None, None)
        ratio = value / reference
        met = ratio >= goal.factor if HIGHER_IS_BETTER[goal.metric] else ratio <= goal.factor
        return GoalCheck(goal, best_class, value, reference, ratio, met)

    def checks(self) -> list[GoalCheck]:
        """Every goal, judged."""
        return [self.check(goal) for goal in GOALS]
