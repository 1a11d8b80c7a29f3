"""Every metric family the code defines is in docs/metrics.md, by the name a scrape shows (counters with
_total), with its labels: the list users read cannot fall behind the code."""

from __future__ import annotations

import re
from pathlib import Path

import wsgistack.observe.metrics.families as families
import wsgistack.proxy.metrics as proxy
import wsgistack.supervisor.metrics as supervisor
from wsgistack.observe.metrics.families import COUNTER, Family

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()


def defined() -> list[Family]:
    """The families of the three modules that define them, but the proxy's private ones (a leading _)."""
    return [value for module in (families, proxy, supervisor) for name, value in vars(module).items()
            if isinstance(value, Family) and not name.startswith("_")]


def test_every_family_is_documented_with_its_labels():
    rows = {match.group(1): match.group(2) for match in re.finditer(r"^\| `([a-z_]+)` \|[^|]*\|([^|]*)\|", DOCS,
                                                                    re.MULTILINE)}
    missing, wrong_labels = [], []
    for family in defined():
        name = family.name + ("_total" if family.kind == COUNTER else "")
        if name not in rows:
            missing.append(name)
        elif set(re.findall(r"`([a-z_]+)`", rows[name])) != set(family.labels):
            wrong_labels.append((name, rows[name], family.labels))
    assert missing == []
    assert wrong_labels == []
    assert len(defined()) > 30
