"""Before/after CPU per proxied request, both trees measured at the same time, as medians of ratios.

    python bench/cpu_ab.py --before /tmp/before [--rounds 6] [--seconds 4]

Each round runs bench/cpu_per_request.sh for the two trees side by side (two proxies, two app workers, two
wrk), so whatever else slows this machine during the round slows both alike: on a shared VM req/s drifts by
a fifth from one run to the next, far more than a change worth measuring. What is compared is CPU time per
request of each process, and each tree's req/s, as after ÷ before per round; the medians are printed.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SCRIPT = BENCH_DIR / "cpu_per_request.sh"
_LINE = re.compile(r"([\d.]+) req/s; proxy (\d+) ns/request; serve worker (\d+) ns/request")
FIELDS = ("req/s", "proxy ns/request", "worker ns/request")


def measure_together(before: Path, after: Path, seconds: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """One round: both trees at once; (req/s, proxy ns, worker ns) of each."""
    runs = [subprocess.Popen(["bash", str(SCRIPT), str(tree), str(seconds)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
            for tree in (before, after)]
    results = []
    for run in runs:
        out, _ = run.communicate(timeout=seconds + 60)
        match = _LINE.search(out)
        if run.returncode or match is None:
            sys.exit(f"cpu_ab: a run failed: {out.strip() or run.returncode}")
        results.append(tuple(float(value) for value in match.groups()))
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, type=Path, help="the tree to compare against")
    parser.add_argument("--after", type=Path, default=BENCH_DIR.parent, help="default: this tree")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args()
    ratios: list[list[float]] = [[] for _ in FIELDS]
    for number in range(1, args.rounds + 1):
        before, after = measure_together(args.before, args.after, args.seconds)
        print(f"round {number}: " + "; ".join(f"{name} {b:.0f} -> {a:.0f}"
                                             for name, b, a in zip(FIELDS, before, after)), flush=True)
        for column, (b, a) in enumerate(zip(before, after)):
            ratios[column].append(a / b)
    print("median after/before: " + "; ".join(f"{name} {statistics.median(column):.3f}"
                                               for name, column in zip(FIELDS, ratios)))


if __name__ == "__main__":
    main()
