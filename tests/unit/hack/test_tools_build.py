"""The tool builder's contract: cache keyed by the pins, clear errors, TOOLS_BIN last."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BUILD = REPO / "hack" / "tools" / "build.py"


def _run(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BUILD), "--cache", str(cache), *args],
                          capture_output=True, text=True, check=False)


def test_print_bin_is_keyed_by_version_and_pins(tmp_path: Path) -> None:
    out = _run("--print-bin", cache=tmp_path)
    assert out.returncode == 0
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith(f"TOOLS_BIN={tmp_path}/v1.37.")
    assert last.endswith("/bin")
    again = _run("--print-bin", cache=tmp_path)
    assert again.stdout == out.stdout  # stable for unchanged pins


def test_unknown_tool_is_a_clear_error(tmp_path: Path) -> None:
    out = _run("no-such-tool", cache=tmp_path)
    assert out.returncode != 0
    assert "unknown tool(s): no-such-tool" in out.stderr


def test_pins_are_consistent_across_wrapper_modules() -> None:
    kube = (REPO / "hack/tools/kubernetes/go.mod").read_text()
    version = next(line.split()[-1] for line in kube.splitlines()
                   if line.startswith("require k8s.io/kubernetes"))
    staging = version.replace("v1.", "v0.", 1)
    replaced = [line for line in kube.splitlines() if "=>" in line]
    assert replaced, "staging modules must be replaced by their releases"
    assert all(line.rstrip().endswith(staging) for line in replaced)
