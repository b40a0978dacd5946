from __future__ import annotations

import pytest

from bench import report


def test_percentile_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert report.percentile(samples, 50) == 50.0
    assert report.percentile(samples, 99) == 99.0
    assert report.percentile(samples, 100) == 100.0
    assert report.percentile([7.0], 99) == 7.0


def test_percentile_rejects_empty() -> None:
    with pytest.raises(ValueError):
        report.percentile([], 50)


def test_record_writes_json_plot_and_section(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(report, "DOCS", tmp_path / "benchmarks.md")
    monkeypatch.setattr(report, "PLOTS", tmp_path / "plots")
    ours = report.Series("ours", (1.0, 2.0, 3.0), "ms")
    peer = report.Series("peer", (2.0, 4.0, 6.0), "ms")
    for _ in range(2):  # a second run replaces the section instead of appending
        report.record(name="demo", title="Demo", command="make bench-demo",
                      series=[ours, peer], ratios={"peer/ours p50": peer.p50 / ours.p50})
    text = (tmp_path / "benchmarks.md").read_text()
    assert text.count("<!-- bench:demo:begin -->") == 1
    assert "make bench-demo" in text and "**2.00**" in text
    assert (tmp_path / "plots" / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "results" / "demo.json").exists()
