"""The whole of our runtime.proto against the published api.proto crictl is built from.

`make tools` downloads k8s.io/cri-api into the Go module cache while building the pinned
Kubernetes release; this test compiles that file and ours and compares every service,
method, message, field (name, number, type, label, options) and enum value.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from tests.harness.prereq import need

REPO = Path(__file__).resolve().parents[2]
CRI_API_VERSION = "v0.37.1"  # the cri-api of Kubernetes v1.37.1, the pinned release

pytestmark = pytest.mark.e2e


def _gomodcache() -> Path:
    go = shutil.which("go")
    if go:
        out = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True,
                             check=False).stdout.strip()
        if out:
            return Path(out)
    return Path(os.environ.get("GOPATH", str(Path.home() / "go"))) / "pkg" / "mod"


def _compile(include: Path, name: str, out: Path) -> descriptor_pb2.FileDescriptorProto:
    rc = protoc.main(["protoc", f"-I{include}", f"--descriptor_set_out={out}", name])
    assert rc == 0, f"protoc failed on {include / name}"
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]


def _flatten(f: descriptor_pb2.FileDescriptorProto) -> dict[str, object]:
    flat: dict[str, object] = {"package": f.package}

    def message(m: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        name = prefix + m.name
        flat[f"message {name}"] = sorted(
            (x.name, x.number, x.type, x.label, x.type_name, x.json_name,
             x.options.SerializeToString(deterministic=True)) for x in m.field)
        for n in m.nested_type:
            message(n, name + ".")
        for e in m.enum_type:
            flat[f"enum {name}.{e.name}"] = sorted((v.name, v.number) for v in e.value)

    for m in f.message_type:
        message(m, "")
    for e in f.enum_type:
        flat[f"enum {e.name}"] = sorted((v.name, v.number) for v in e.value)
    for s in f.service:
        flat[f"service {s.name}"] = sorted(
            (x.name, x.input_type, x.output_type, x.client_streaming, x.server_streaming)
            for x in s.method)
    return flat


def test_our_proto_equals_the_published_cri(tmp_path: Path) -> None:
    upstream = (_gomodcache() / f"k8s.io/cri-api@{CRI_API_VERSION}"
                / "pkg/apis/runtime/v1/api.proto")
    need(upstream.exists(), f"the published CRI proto at {upstream}",
         "run `make tools` (it fetches k8s.io/cri-api with the pinned Kubernetes)")
    ours = _flatten(_compile(REPO / "cri/api", "runtime.proto", tmp_path / "ours.pb"))
    theirs = _flatten(_compile(upstream.parent, "api.proto", tmp_path / "theirs.pb"))
    differences = {k: (ours.get(k), theirs.get(k)) for k in set(ours) | set(theirs)
                   if ours.get(k) != theirs.get(k)}
    assert differences == {}
    assert len(ours) > 180
