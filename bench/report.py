"""Shared reporting for every benchmark: percentiles, JSON results, a PNG plot, the docs page.

A benchmark module measures ours and a peer in one run, then calls `record(...)`. That
writes `bench/results/<name>.json` and `docs/benchmarks/<name>.png`, and rewrites this
benchmark's section of `docs/benchmarks.md` between its markers, with the exact command
that repeats it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
PLOTS = REPO / "docs" / "benchmarks"


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sample."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclasses.dataclass(frozen=True)
class Series:
    """One contender's samples (e.g. milliseconds per operation) and its unit."""

    label: str
    samples: tuple[float, ...]
    unit: str

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)

    def summary(self) -> dict[str, float | int | str]:
        return {"label": self.label, "unit": self.unit, "n": len(self.samples),
                "p50": self.p50, "p99": self.p99, "min": min(self.samples),
                "max": max(self.samples)}


def _plot(name: str, title: str, series: Sequence[Series]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    ax.boxplot([list(s.samples) for s in series], orientation="horizontal", showfliers=True)
    ax.set_yticks(range(1, len(series) + 1), [s.label for s in series])
    ax.set_xlabel(series[0].unit)
    ax.set_title("\n".join(textwrap.wrap(title, 64)), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = PLOTS / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _section(name: str, title: str, command: str, series: Sequence[Series],
             ratios: Mapping[str, float], notes: str) -> str:
    lines = [f"<!-- bench:{name}:begin -->", f"## {title}", "",
             f"Repeat: `{command}`", "",
             "| contender | n | p50 | p99 | min | max |", "|---|---|---|---|---|---|"]
    for s in series:
        lines.append(f"| {s.label} | {len(s.samples)} | {s.p50:.3g} {s.unit} | "
                     f"{s.p99:.3g} {s.unit} | {min(s.samples):.3g} | {max(s.samples):.3g} |")
    lines.append("")
    for label, value in ratios.items():
        lines.append(f"- {label}: **{value:.2f}**")
    if notes:
        lines += ["", notes.strip()]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines += ["", f"Measured {when} on {platform.node()} ({os.cpu_count()} cores, "
              f"{platform.release()}).", "", f"![{title}](benchmarks/{name}.png)",
              f"<!-- bench:{name}:end -->"]
    return "\n".join(lines)


def record(*, name: str, title: str, command: str, series: Sequence[Series],
           ratios: Mapping[str, float], notes: str = "") -> Path:
    """Write the JSON result, the PNG plot and this benchmark's section of the docs."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"name": name, "title": title, "command": command,
               "series": [s.summary() for s in series], "ratios": dict(ratios),
               "samples": {s.label: list(s.samples) for s in series}}
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(payload, indent=2))
    _plot(name, title, series)
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    section = _section(name, title, command, series, ratios, notes)
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOCS.write_text(text)
    return out


def replot() -> int:
    """Redraw every plot from the recorded results (bench/results/*.json)."""
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        units = {s["label"]: s["unit"] for s in data["series"]}
        series = [Series(label, tuple(samples), units[label])
                  for label, samples in data["samples"].items()]
        print(_plot(data["name"], data["title"], series))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--replot"]:
        raise SystemExit("usage: python -m bench.report --replot")
    sys.exit(replot())
