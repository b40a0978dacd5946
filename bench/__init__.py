"""Benchmarks: ours and a peer side by side in one run; results in docs/benchmarks.md."""
