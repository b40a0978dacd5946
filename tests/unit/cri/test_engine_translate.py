"""CRI messages to engine specs: every field carried, every unsupported one refused."""
from __future__ import annotations

import pytest

from cri.api import runtime_pb2 as pb
from cri.errors import Unimplemented
from cri.server import engine_translate as tr
from cri.server.engine_images import user_of
from engine.errors import InvalidArgument


def pod() -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="web", namespace="ns", uid="u1", attempt=2),
        hostname="web-0", log_directory="/var/log/pods/ns_web_u1",
        dns_config=pb.DNSConfig(servers=["10.96.0.10"], searches=["ns.svc"], options=["ndots:5"]),
        port_mappings=[pb.PortMapping(protocol=pb.UDP, container_port=53, host_port=5353),
                       pb.PortMapping(protocol=pb.TCP, container_port=80)],  # no host port
        labels={"a": "b"}, annotations={"c": "d"},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent="/kubepods/pod-u1", sysctls={"net.ipv4.ip_forward": "1"},
            security_context=pb.LinuxSandboxSecurityContext(
                privileged=True, namespace_options=pb.NamespaceOption(
                    network=pb.NODE, pid=pb.POD, ipc=pb.POD))))


def test_sandbox_config() -> None:
    cfg = tr.sandbox_config(pod(), runtime_handler="runc")
    assert (cfg.name, cfg.namespace, cfg.uid, cfg.attempt) == ("web", "ns", "u1", 2)
    assert cfg.dns is not None and cfg.dns.options == ("ndots:5",)
    assert [(p.protocol, p.container_port, p.host_port) for p in cfg.port_mappings] == [
        ("udp", 53, 5353)]
    assert cfg.host_network and not cfg.host_pid and cfg.share_pid and not cfg.host_ipc
    assert cfg.cgroup_parent == "/kubepods/pod-u1" and cfg.privileged
    assert cfg.runtime_handler == "runc" and cfg.sysctls == {"net.ipv4.ip_forward": "1"}
    no_dns = pod()
    no_dns.ClearField("dns_config")
    assert tr.sandbox_config(no_dns, runtime_handler="").dns is None


def container() -> pb.ContainerConfig:
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="c", attempt=1), image=pb.ImageSpec(image="busybox"),
        command=["/bin/sh"], args=["-c", "true"], working_dir="/w",
        envs=[pb.KeyValue(key="A", value="é".encode())],
        mounts=[pb.Mount(container_path="/d", host_path="/srv", readonly=True,
                         propagation=pb.PROPAGATION_HOST_TO_CONTAINER)],
        log_path="c/1.log", stdin=True, tty=True,
        linux=pb.LinuxContainerConfig(
            resources=pb.LinuxContainerResources(cpu_shares=512, cpu_quota=50000,
                                                 cpu_period=100000,
                                                 memory_limit_in_bytes=1 << 26,
                                                 oom_score_adj=900,
                                                 hugepage_limits=[pb.HugepageLimit(
                                                     page_size="2MB", limit=0)]),
            security_context=pb.LinuxContainerSecurityContext(
                run_as_user=pb.Int64Value(value=0), run_as_group=pb.Int64Value(value=7),
                capabilities=pb.Capability(add_capabilities=["NET_ADMIN"],
                                           drop_capabilities=["ALL"]),
                no_new_privs=True, masked_paths=["/proc/kcore"],
                seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Localhost,
                                           localhost_ref="/p.json"))))


def test_container_config() -> None:
    cfg = tr.container_config(container())
    assert (cfg.name, cfg.attempt, cfg.image) == ("c", 1, "busybox")
    assert cfg.command == ("/bin/sh",) and cfg.args == ("-c", "true")
    assert cfg.env == (("A", "é"),)
    assert cfg.mounts[0].propagation == "rslave" and cfg.mounts[0].readonly
    assert cfg.resources.memory_limit == 1 << 26 and cfg.resources.cpu_quota == 50000
    assert cfg.oom_score_adj == 900
    sec = cfg.security
    assert sec.run_as_user == 0 and sec.run_as_group == 7 and sec.no_new_privs
    assert sec.drop_capabilities == ("ALL",) and sec.masked_paths == ("/proc/kcore",)
    assert sec.readonly_paths is None  # unset: the runtime's defaults
    assert (sec.seccomp.type, sec.seccomp.localhost_path) == ("Localhost", "/p.json")
    unset = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="x"))
    assert tr.container_config(unset).security.run_as_user is None


@pytest.mark.parametrize(("path", "kind"), [
    ("", "Unconfined"), ("unconfined", "Unconfined"), ("runtime/default", "RuntimeDefault"),
    ("localhost/x.json", "Localhost")])
def test_deprecated_seccomp_paths(path: str, kind: str) -> None:
    cfg = container()
    cfg.linux.security_context.ClearField("seccomp")
    cfg.linux.security_context.seccomp_profile_path = path
    assert tr.container_config(cfg).security.seccomp.type == kind


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda c: c.devices.add(container_path="/dev/x", host_path="/dev/x"), "device"),
    (lambda c: c.mounts[0].image.MergeFrom(pb.ImageSpec(image="img")), "image volume"),
    (lambda c: c.mounts[0].mount_options.append("noexec"), "mount options"),
    (lambda c: c.linux.resources.unified.update({"memory.high": "1"}), "unified"),
    (lambda c: c.linux.resources.hugepage_limits.add(page_size="2MB", limit=2 << 20),
     "hugepage"),
    (lambda c: setattr(c.linux.security_context.apparmor, "profile_type",
                       pb.SecurityProfile.Localhost), "AppArmor"),
    (lambda c: setattr(c.linux.security_context.selinux_options, "level", "s0"), "SELinux"),
    (lambda c: setattr(c.linux.security_context.namespace_options, "pid", pb.TARGET),
     "target"),
])
def test_unsupported_fields_are_refused(mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    cfg = container()
    mutate(cfg)
    with pytest.raises(Unimplemented, match=needle):
        tr.container_config(cfg)


def test_bad_values_are_invalid() -> None:
    cfg = container()
    cfg.envs.add(key="B", value=b"\xff")
    with pytest.raises(InvalidArgument, match="UTF-8"):
        tr.container_config(cfg)
    cfg = container()
    cfg.linux.security_context.ClearField("seccomp")
    cfg.linux.security_context.seccomp_profile_path = "weird"
    with pytest.raises(InvalidArgument):
        tr.container_config(cfg)


def test_image_users() -> None:
    assert user_of("") == (None, "")
    assert user_of("1000:50") == (1000, "")
    assert user_of("nobody") == (None, "nobody")
    assert user_of("www:www") == (None, "www")


def test_recursive_read_only_mounts_round_trip() -> None:
    cfg = container()
    cfg.mounts[0].readonly = True
    cfg.mounts[0].recursive_read_only = True
    mount = tr.container_config(cfg).mounts[0]
    assert mount.readonly and mount.recursive_readonly
    assert tr.mount_to_pb(mount).recursive_read_only
    cfg.mounts[0].recursive_read_only = False
    assert not tr.container_config(cfg).mounts[0].recursive_readonly


@pytest.mark.parametrize(("policy", "merge"), [(pb.Merge, True), (pb.Strict, False)])
def test_supplemental_groups_policy(policy: int, merge: bool) -> None:
    cfg = container()
    cfg.linux.security_context.supplemental_groups_policy = policy  # type: ignore[assignment]
    assert tr.container_config(cfg).security.merge_image_groups is merge
