"""e2e fixtures: `control_plane` is a real control plane of the session's own (see cluster.py)."""
from __future__ import annotations

from tests.harness.cluster import control_plane

__all__ = ["control_plane"]
