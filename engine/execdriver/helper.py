"""How to start our small Python helper process, the pod monitor: the interpreter without
site-packages, with only our source tree on the path and a fixed minimal environment."""
from __future__ import annotations

import sys
from pathlib import Path

SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-S", "-B", "-m", module, *args]


def helper_env() -> dict[str, str]:
    return {"PYTHONPATH": SOURCE_ROOT, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONDONTWRITEBYTECODE": "1"}
