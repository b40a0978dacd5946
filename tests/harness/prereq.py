"""Prerequisites of the deeper test tiers: skip locally, fail loudly under CI=true."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(ok: bool, what: str, fix: str) -> None:
    """Skip the test when a prerequisite is missing, or fail when running in CI."""
    if ok:
        return
    message = f"missing prerequisite: {what}. To fix: {fix}"
    if in_ci():
        pytest.fail(message + " (CI=true: a missing prerequisite is a failure)", pytrace=False)
    pytest.skip(message)


def need_root() -> None:
    need(os.geteuid() == 0, "root (namespaces, cgroups, mounts)", "run the tests as root")


def need_binary(name: str, fix: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"`{name}` on PATH", fix)
    assert path is not None
    return path


def tools_bin() -> Path:
    """The directory `make tools` builds into (TOOLS_BIN from the environment or the cache)."""
    env = os.environ.get("TOOLS_BIN")
    if env:
        return Path(env)
    out = subprocess.run([sys.executable, str(REPO / "hack/tools/build.py"), "--print-bin"],
                         capture_output=True, text=True, check=True).stdout
    return Path(out.strip().rsplit("=", 1)[1])


def need_tool(name: str) -> Path:
    path = tools_bin() / name
    need(path.exists(), f"upstream tool {name} in {path.parent}", "run `make tools`")
    return path
