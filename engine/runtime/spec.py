"""The requests the CRI layer hands to the runtime (values only, CRI-shaped)."""
from __future__ import annotations

import dataclasses

from engine.cgroups.base import Resources
from engine.execdriver.spec import IDMapping
from engine.graphdriver.base import Mount
from engine.networkdriver.base import PortMapping


@dataclasses.dataclass(frozen=True)
class DNSConfig:
    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    name: str
    namespace: str
    uid: str
    attempt: int = 0
    hostname: str = ""
    log_directory: str = ""
    dns: DNSConfig | None = None  # None = use the host's /etc/resolv.conf
    port_mappings: tuple[PortMapping, ...] = ()
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    cgroup_parent: str = ""  # relative to the cgroup root; "" = "kubelet-py"
    sysctls: dict[str, str] = dataclasses.field(default_factory=dict)
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    share_pid: bool = False  # CRI NamespaceMode POD for pid
    privileged: bool = False
    runtime_handler: str = ""  # "" = the runtime's default driver; or "native"|"runc"|"crun"
    # CRI user namespace mode POD: the pod's own user namespace with these maps (exactly one
    # range each, container id 0 mapped); both empty = the host's (mode NODE)
    uid_mappings: tuple[IDMapping, ...] = ()
    gid_mappings: tuple[IDMapping, ...] = ()

    @property
    def user_namespace(self) -> bool:
        return bool(self.uid_mappings or self.gid_mappings)


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config the runtime merges with the request."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str = ""
    user: str = ""
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""  # STOPSIGNAL: "SIGQUIT", "QUIT", "3"; "" = SIGTERM


@dataclasses.dataclass(frozen=True)
class VolumeMount:
    container_path: str
    host_path: str
    readonly: bool = False
    propagation: str = "private"  # private | rslave | rshared
    recursive_readonly: bool = False  # submounts read-only too; needs readonly and private


@dataclasses.dataclass(frozen=True)
class SeccompChoice:
    type: str = "RuntimeDefault"  # RuntimeDefault | Unconfined | Localhost
    localhost_path: str = ""


@dataclasses.dataclass(frozen=True)
class SecurityConfig:
    privileged: bool = False
    readonly_rootfs: bool = False
    run_as_user: int | None = None
    run_as_username: str = ""
    run_as_group: int | None = None
    supplemental_groups: tuple[int, ...] = ()
    # False (CRI "Strict"): only the primary group and `supplemental_groups`; True ("Merge"):
    # also the groups the image's /etc/group lists the user in
    merge_image_groups: bool = True
    add_capabilities: tuple[str, ...] = ()
    drop_capabilities: tuple[str, ...] = ()
    no_new_privs: bool = False
    seccomp: SeccompChoice = SeccompChoice()
    masked_paths: tuple[str, ...] | None = None  # None = the runtime's defaults
    readonly_paths: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Rootfs:
    """A rootfs as a ready directory, or as graphdriver mounts the runtime mounts itself."""

    directory: str = ""
    mounts: tuple[Mount, ...] = ()


@dataclasses.dataclass(frozen=True)
class ContainerConfig:
    name: str
    attempt: int = 0
    image: str = ""  # the image reference, for status only
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    working_dir: str = ""
    env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[VolumeMount, ...] = ()
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    log_path: str = ""  # relative to the sandbox's log_directory, as in the CRI
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    resources: Resources = dataclasses.field(default_factory=Resources)
    security: SecurityConfig = dataclasses.field(default_factory=SecurityConfig)
    oom_score_adj: int = 0
    stop_signal: str = ""  # what StopContainer sends first; "" = the image's, else SIGTERM
