"""Wiring of the kubelet's parts; the entry point behind `kubelet-py`."""
from __future__ import annotations

import argparse
import sys

from kubelet_py.options import KubeletOptions


def run(options: KubeletOptions, ns: argparse.Namespace) -> int:
    sys.stderr.write("kubelet-py: the node agent is not assembled yet in this build "
                     f"(runtime endpoint {options.container_runtime_endpoint}).\n")
    return 2
