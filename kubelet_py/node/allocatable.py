"""What the node offers pods: its allocatable resources (capacity minus eviction reserves)."""
from __future__ import annotations

import dataclasses

from kubelet_py.node.machine import MachineInfo

MEMORY_EVICTION_HARD = 100 * 1024 * 1024
"""memory.available<100Mi: the upstream default hard eviction threshold."""
NODEFS_EVICTION_HARD = 0.10
"""nodefs.available<10%."""


@dataclasses.dataclass(frozen=True)
class Allocatable:
    cpu_millis: int
    memory_bytes: int
    ephemeral_storage_bytes: int
    pods: int


def node_allocatable(machine: MachineInfo, *, max_pods: int) -> Allocatable:
    """The node's allocatable, as reported in its status and used by pod admission."""
    return Allocatable(
        cpu_millis=machine.cpus * 1000,
        memory_bytes=max(0, machine.memory_bytes - MEMORY_EVICTION_HARD) // 1024 * 1024,
        ephemeral_storage_bytes=int(machine.ephemeral_storage_bytes *
                                    (1 - NODEFS_EVICTION_HARD)) // 1024 * 1024,
        pods=max_pods)
