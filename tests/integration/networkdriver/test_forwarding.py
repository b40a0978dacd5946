"""isGateway turns forwarding on, for the families of the pod's addresses (in a netns of the
test's own, so the host's settings are never touched)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.prereq import need_root

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
CODE = ("import sys; sys.path.insert(0, sys.argv[1])\n"
        "from engine.networkdriver.plugins import bridge_link\n"
        "paths = ('/proc/sys/net/ipv4/ip_forward', '/proc/sys/net/ipv6/conf/all/forwarding')\n"
        "for p in paths:\n"
        "    open(p, 'w').write('0')\n"
        "bridge_link.enable_forwarding({int(v) for v in sys.argv[2:]})\n"
        "print(' '.join(open(p).read().strip() for p in paths))\n")


@pytest.mark.parametrize(("versions", "expected"), [(["4"], "1 0"), (["6"], "0 1"),
                                                    (["4", "6"], "1 1")])
def test_forwarding_is_turned_on_for_the_pod_families(versions: list[str],
                                                      expected: str) -> None:
    need_root()
    name = f"kpyt-fwd{os.urandom(3).hex()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        out = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c", CODE,
                              str(REPO), *versions], capture_output=True, text=True,
                             check=True).stdout
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    assert out.split() == expected.split()
