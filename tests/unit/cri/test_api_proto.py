"""Our runtime.proto keeps the published CRI v1 wire contract, and its stubs are fresh."""
from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor

from cri.api import runtime_pb2, runtime_pb2_grpc

REPO = Path(__file__).resolve().parents[3]

# Field numbers of the published k8s.io/cri-api v0.37.1 pkg/apis/runtime/v1/api.proto.
PUBLISHED_FIELDS: dict[str, dict[str, int]] = {
    "PodSandboxConfig": {
        "metadata": 1, "hostname": 2, "log_directory": 3, "dns_config": 4,
        "port_mappings": 5, "labels": 6, "annotations": 7, "linux": 8, "windows": 9,
    },
    "ContainerConfig": {
        "metadata": 1, "image": 2, "command": 3, "args": 4, "working_dir": 5, "envs": 6,
        "mounts": 7, "devices": 8, "labels": 9, "annotations": 10, "log_path": 11,
        "stdin": 12, "stdin_once": 13, "tty": 14, "linux": 15, "windows": 16,
        "CDI_devices": 17, "stop_signal": 18,
    },
    "LinuxContainerSecurityContext": {
        "capabilities": 1, "privileged": 2, "namespace_options": 3, "selinux_options": 4,
        "run_as_user": 5, "run_as_username": 6, "readonly_rootfs": 7,
        "supplemental_groups": 8, "apparmor_profile": 9, "seccomp_profile_path": 10,
        "no_new_privs": 11, "run_as_group": 12, "masked_paths": 13, "readonly_paths": 14,
        "seccomp": 15, "apparmor": 16, "supplemental_groups_policy": 17,
    },
    "LinuxSandboxSecurityContext": {
        "namespace_options": 1, "selinux_options": 2, "run_as_user": 3,
        "readonly_rootfs": 4, "supplemental_groups": 5, "privileged": 6,
        "seccomp_profile_path": 7, "run_as_group": 8, "seccomp": 9, "apparmor": 10,
        "supplemental_groups_policy": 11,
    },
    "ContainerStatus": {
        "id": 1, "metadata": 2, "state": 3, "created_at": 4, "started_at": 5,
        "finished_at": 6, "exit_code": 7, "image": 8, "image_ref": 9, "reason": 10,
        "message": 11, "labels": 12, "annotations": 13, "mounts": 14, "log_path": 15,
        "resources": 16, "image_id": 17, "user": 18, "stop_signal": 19,
    },
    "PullImageRequest": {"image": 1, "auth": 2, "sandbox_config": 3},
    "ContainerEventResponse": {
        "container_id": 1, "container_event_type": 2, "created_at": 3,
        "pod_sandbox_status": 4, "containers_statuses": 5,
    },
    "ImageSpec": {
        "image": 1, "annotations": 2, "user_specified_image": 18, "runtime_handler": 19,
        "image_ref": 20,
    },
    "Mount": {
        "container_path": 1, "host_path": 2, "readonly": 3, "selinux_relabel": 4,
        "propagation": 5, "uidMappings": 6, "gidMappings": 7, "recursive_read_only": 8,
        "image": 9, "image_sub_path": 10, "mount_options": 11,
    },
    "StatusResponse": {"status": 1, "info": 2, "runtime_handlers": 3, "features": 4},
    "NamespaceOption": {"network": 1, "pid": 2, "ipc": 3, "target_id": 4, "userns_options": 5},
    "Namespace": {"options": 2},
    "PsiData": {"Total": 1, "Avg10": 2, "Avg60": 3, "Avg300": 4},
}

PUBLISHED_ENUMS: dict[str, dict[str, int]] = {
    "ContainerState": {"CONTAINER_CREATED": 0, "CONTAINER_RUNNING": 1,
                       "CONTAINER_EXITED": 2, "CONTAINER_UNKNOWN": 3},
    "ContainerEventType": {"CONTAINER_CREATED_EVENT": 0, "CONTAINER_STARTED_EVENT": 1,
                           "CONTAINER_STOPPED_EVENT": 2, "CONTAINER_DELETED_EVENT": 3},
    "NamespaceMode": {"POD": 0, "CONTAINER": 1, "NODE": 2, "TARGET": 3},
    "CgroupDriver": {"SYSTEMD": 0, "CGROUPFS": 1},
    "MountPropagation": {"PROPAGATION_PRIVATE": 0, "PROPAGATION_HOST_TO_CONTAINER": 1,
                         "PROPAGATION_BIDIRECTIONAL": 2},
}


def test_package_is_runtime_v1() -> None:
    assert runtime_pb2.DESCRIPTOR.package == "runtime.v1"


@pytest.mark.parametrize("message", sorted(PUBLISHED_FIELDS))
def test_field_numbers_match_the_published_cri(message: str) -> None:
    desc = runtime_pb2.DESCRIPTOR.message_types_by_name[message]
    ours = {f.name: f.number for f in desc.fields}
    assert ours == PUBLISHED_FIELDS[message]


@pytest.mark.parametrize("enum", sorted(PUBLISHED_ENUMS))
def test_enum_values_match_the_published_cri(enum: str) -> None:
    desc = runtime_pb2.DESCRIPTOR.enum_types_by_name[enum]
    assert {v.name: v.number for v in desc.values} == PUBLISHED_ENUMS[enum]


def test_field_types_that_clients_depend_on() -> None:
    fields = runtime_pb2.DESCRIPTOR.message_types_by_name
    assert fields["KeyValue"].fields_by_name["value"].type == descriptor.FieldDescriptor.TYPE_BYTES
    assert fields["ExecSyncResponse"].fields_by_name["stdout"].type == (
        descriptor.FieldDescriptor.TYPE_BYTES)
    assert fields["Image"].fields_by_name["size"].type == descriptor.FieldDescriptor.TYPE_UINT64
    assert fields["ContainerStatus"].fields_by_name["exit_code"].type == (
        descriptor.FieldDescriptor.TYPE_INT32)


def test_services_and_streaming_methods() -> None:
    runtime = runtime_pb2.DESCRIPTOR.services_by_name["RuntimeService"]
    images = runtime_pb2.DESCRIPTOR.services_by_name["ImageService"]
    streams = {m.name for m in runtime.methods if m.server_streaming}
    assert streams == {"StreamPodSandboxes", "StreamContainers", "StreamContainerStats",
                       "StreamPodSandboxStats", "GetContainerEvents",
                       "StreamPodSandboxMetrics"}
    assert len(runtime.methods) == 37
    assert [m.name for m in images.methods] == [
        "ListImages", "StreamImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"]
    assert not any(m.client_streaming for m in (*runtime.methods, *images.methods))
    # the generated servicer exposes every method under its wire name
    assert hasattr(runtime_pb2_grpc.RuntimeServiceServicer, "UpdatePodSandboxResources")


def test_a_message_round_trips_through_the_wire_format() -> None:
    config = runtime_pb2.ContainerConfig(
        metadata=runtime_pb2.ContainerMetadata(name="web", attempt=3),
        image=runtime_pb2.ImageSpec(image="busybox:latest", user_specified_image="busybox"),
        command=["/bin/sh", "-c"], args=["echo hi"],
        envs=[runtime_pb2.KeyValue(key="A", value=b"1")],
        mounts=[runtime_pb2.Mount(container_path="/data", host_path="/srv", readonly=True,
                                  mount_options=["noexec"])],
        labels={"io.kubernetes.container.name": "web"},
        linux=runtime_pb2.LinuxContainerConfig(
            security_context=runtime_pb2.LinuxContainerSecurityContext(
                run_as_user=runtime_pb2.Int64Value(value=0), masked_paths=["/proc/kcore"])),
        stop_signal=runtime_pb2.SIGNAL_SIGTERM,
    )
    wire = config.SerializeToString(deterministic=True)
    back = runtime_pb2.ContainerConfig.FromString(wire)
    assert back == config
    assert back.SerializeToString(deterministic=True) == wire
    # known bytes: field 1 (metadata), length-delimited, containing name "web" and attempt 3
    assert wire.startswith(b"\x0a\x07\x0a\x03web\x10\x03")


def test_make_proto_output_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(["make", "-s", "proto", f"PROTO_OUT={tmp_path}"], cwd=REPO, check=True,
                   capture_output=True, timeout=120)
    for name in ("runtime_pb2.py", "runtime_pb2.pyi", "runtime_pb2_grpc.py"):
        assert filecmp.cmp(tmp_path / name, REPO / "cri/api" / name, shallow=False), (
            f"cri/api/{name} is stale: run `make proto`")
    assert "from cri.api import runtime_pb2 as runtime__pb2" in (
        tmp_path / "runtime_pb2_grpc.py").read_text()
