"""InitSpec -> OCI runtime-spec config.json (what runc and crun read from a bundle)."""
from __future__ import annotations

from typing import Any

from engine.cgroups.base import Resources
from engine.execdriver import mountopts
from engine.execdriver.seccomp import to_oci
from engine.execdriver.spec import InitSpec

OCI_VERSION = "1.0.2"
NAMESPACE_NAMES = {"mnt": "mount", "pid": "pid", "net": "network", "ipc": "ipc", "uts": "uts",
                   "user": "user"}


def resources(r: Resources, *, privileged: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "devices": [{"allow": privileged, "access": "rwm"}],
    }
    cpu: dict[str, Any] = {}
    if r.cpu_shares:
        cpu["shares"] = r.cpu_shares
    if r.cpu_quota:
        cpu["quota"] = r.cpu_quota
    if r.cpu_period:
        cpu["period"] = r.cpu_period
    if r.cpuset_cpus:
        cpu["cpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        cpu["mems"] = r.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if r.memory_limit:
        out["memory"] = {"limit": r.memory_limit}
    if r.pids_limit:
        out["pids"] = {"limit": r.pids_limit}
    return out


def id_mappings(spec: InitSpec) -> dict[str, Any]:
    """linux.uidMappings/gidMappings: the maps of the pod's user namespace, which the
    container joins by path (runc checks the pair; the rootfs and volumes are ID-mapped
    mounts already, so no mount carries the `idmap` option)."""
    return {key: [{"containerID": m.container_id, "hostID": m.host_id, "size": m.size}
                  for m in maps]
            for key, maps in (("uidMappings", spec.uid_mappings),
                              ("gidMappings", spec.gid_mappings))}


def config(spec: InitSpec) -> dict[str, Any]:
    c = spec.capabilities
    linux: dict[str, Any] = {
        "namespaces": [{"type": NAMESPACE_NAMES[n.type], **({"path": n.path} if n.path else {})}
                       for n in spec.namespaces],
        "resources": resources(spec.resources, privileged=spec.privileged),
        "maskedPaths": list(spec.masked_paths),
        "readonlyPaths": list(spec.readonly_paths),
        "rootfsPropagation": mountopts.root_propagation(m.options for m in spec.mounts),
    }
    if spec.uid_mappings or spec.gid_mappings:
        linux.update(id_mappings(spec))
    if spec.cgroup_path:
        linux["cgroupsPath"] = "/" + spec.cgroup_path
    if spec.seccomp is not None:
        linux["seccomp"] = to_oci(spec.seccomp)
    process: dict[str, Any] = {
        "terminal": spec.terminal,
        "user": {"uid": spec.user.uid, "gid": spec.user.gid,
                 "additionalGids": list(spec.user.additional_gids)},
        "args": list(spec.args),
        "env": list(spec.env),
        "cwd": spec.cwd,
        "capabilities": {"bounding": list(c.bounding), "effective": list(c.effective),
                         "permitted": list(c.permitted), "inheritable": list(c.inheritable),
                         "ambient": list(c.ambient)},
        "noNewPrivileges": spec.no_new_privileges,
    }
    if spec.oom_score_adj:
        process["oomScoreAdj"] = spec.oom_score_adj
    out: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": spec.rootfs, "readonly": spec.readonly_rootfs},
        "mounts": [{"destination": m.destination, "type": m.type, "source": m.source,
                    "options": list(m.options)} for m in spec.mounts],
        "linux": linux,
    }
    if spec.hostname and (ns := spec.namespace("uts")) is not None and not ns.path:
        out["hostname"] = spec.hostname
    return out
