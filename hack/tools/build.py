#!/usr/bin/env python3
"""Build the pinned upstream reference tools into a cache outside the checkout.

Each subdirectory of hack/tools is a tiny wrapper Go module whose go.mod/go.sum pin one
upstream project; this script builds the commands we test against from those pins.

The cache directory is keyed by the pins: ``$TOOLS_CACHE/<version>/bin`` where
``<version>`` is the Kubernetes version plus a short hash of every wrapper go.mod/go.sum,
so changing a pin builds into a fresh directory and an unchanged one is reused. A tool is
rebuilt only when its binary or its stamp is missing. The last line printed is
``TOOLS_BIN=<dir>``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = ("kubernetes", "etcd", "cri-tools", "cni", "containerd")


def _required_version(module_dir: str, module: str) -> str:
    text = (HERE / module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
    if not match:
        raise SystemExit(f"make tools: {module} is not pinned in hack/tools/{module_dir}/go.mod")
    return match.group(1)


K8S_VERSION = _required_version("kubernetes", "k8s.io/kubernetes")
CRI_TOOLS_VERSION = _required_version("cri-tools", "sigs.k8s.io/cri-tools")
CONTAINERD_VERSION = _required_version("containerd", "github.com/containerd/containerd/v2")
ETCD_VERSION = _required_version("etcd", "go.etcd.io/etcd/server/v3")


def _k8s_ldflags() -> str:
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={K8S_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return "-s -w " + " ".join(flags)


@dataclasses.dataclass(frozen=True)
class Tool:
    name: str
    module_dir: str
    package: str
    ldflags: str = "-s -w"
    tags: str = ""
    test_binary: bool = False  # built with `go test -c`


TOOLS: tuple[Tool, ...] = (
    Tool("etcd", "etcd", "go.etcd.io/etcd/server/v3",
         f"-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA={ETCD_VERSION}"),
    Tool("etcdctl", "etcd", "go.etcd.io/etcd/etcdctl/v3"),
    Tool("kube-apiserver", "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver", _k8s_ldflags()),
    Tool("kube-controller-manager", "kubernetes", "k8s.io/kubernetes/cmd/kube-controller-manager",
         _k8s_ldflags()),
    Tool("kube-scheduler", "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler", _k8s_ldflags()),
    Tool("kubectl", "kubernetes", "k8s.io/kubernetes/cmd/kubectl", _k8s_ldflags()),
    Tool("crictl", "cri-tools", "sigs.k8s.io/cri-tools/cmd/crictl",
         f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={CRI_TOOLS_VERSION}"),
    Tool("critest", "cri-tools", "sigs.k8s.io/cri-tools/cmd/critest",
         f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={CRI_TOOLS_VERSION}",
         test_binary=True),
    Tool("cnitool", "cni", "github.com/containernetworking/cni/cnitool"),
    Tool("bridge", "cni", "github.com/containernetworking/plugins/plugins/main/bridge"),
    Tool("host-local", "cni", "github.com/containernetworking/plugins/plugins/ipam/host-local"),
    Tool("loopback", "cni", "github.com/containernetworking/plugins/plugins/main/loopback"),
    Tool("portmap", "cni", "github.com/containernetworking/plugins/plugins/meta/portmap"),
    Tool("containerd", "containerd", "github.com/containerd/containerd/v2/cmd/containerd",
         f"-s -w -X github.com/containerd/containerd/v2/version.Version={CONTAINERD_VERSION}",
         tags="no_btrfs"),
    Tool("ctr", "containerd", "github.com/containerd/containerd/v2/cmd/ctr",
         f"-s -w -X github.com/containerd/containerd/v2/version.Version={CONTAINERD_VERSION}",
         tags="no_btrfs"),
    Tool("containerd-shim-runc-v2", "containerd",
         "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
         f"-s -w -X github.com/containerd/containerd/v2/version.Version={CONTAINERD_VERSION}",
         tags="no_btrfs"),
)


def pins_key() -> str:
    digest = hashlib.sha256()
    for module in MODULES:
        for name in ("go.mod", "go.sum"):
            digest.update((HERE / module / name).read_bytes())
    return f"{K8S_VERSION}-{digest.hexdigest()[:10]}"


def tool_stamp(tool: Tool) -> str:
    digest = hashlib.sha256()
    digest.update(repr(dataclasses.astuple(tool)).encode())
    for name in ("go.mod", "go.sum"):
        digest.update((HERE / tool.module_dir / name).read_bytes())
    return digest.hexdigest()


class Progress:
    """A one-line progress bar on a terminal, plain lines elsewhere (CI logs)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()

    def show(self, label: str) -> None:
        width = 30
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {self.done}/{self.total} {label}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def build(tool: Tool, bin_dir: Path, log_dir: Path) -> None:
    out = bin_dir / tool.name
    tmp = bin_dir / f".{tool.name}.tmp"
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false", GOWORK="off")
    if tool.test_binary:
        cmd = ["go", "test", "-c", "-o", str(tmp)]
    else:
        cmd = ["go", "build", "-trimpath", "-o", str(tmp)]
    cmd += ["-ldflags", tool.ldflags]
    if tool.tags:
        cmd += ["-tags", tool.tags]
    cmd.append(tool.package)
    log = log_dir / f"{tool.name}.log"
    with log.open("w") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=HERE / tool.module_dir, env=env, stdout=fh,
                              stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-8:]
        reason = "\n    ".join(tail)
        raise SystemExit(
            f"\nmake tools: building {tool.name} ({tool.package}) failed with exit "
            f"{proc.returncode}; full log: {log}\n    {reason}\n"
            "Check that the Go module proxy is reachable and `go version` is at least the "
            "go line of hack/tools/*/go.mod.")
    tmp.replace(out)
    (bin_dir / f".{tool.name}.stamp").write_text(tool_stamp(tool))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=os.environ.get(
        "TOOLS_CACHE", str(Path.home() / ".cache" / "kubelet-py" / "tools")),
        help="cache root (default ~/.cache/kubelet-py/tools, or $TOOLS_CACHE)")
    parser.add_argument("--print-bin", action="store_true",
                        help="print TOOLS_BIN=<dir> without building")
    parser.add_argument("only", nargs="*", help="build only these tools")
    args = parser.parse_args()

    if shutil.which("go") is None:
        raise SystemExit("make tools: `go` is not on PATH; install Go (>= 1.26) first.")
    bin_dir = Path(args.cache) / pins_key() / "bin"
    if args.print_bin:
        print(f"TOOLS_BIN={bin_dir}")
        return 0
    log_dir = bin_dir.parent / "logs"
    bin_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)

    unknown = set(args.only) - {t.name for t in TOOLS}
    if unknown:
        raise SystemExit(f"make tools: unknown tool(s): {', '.join(sorted(unknown))}")
    selected = [t for t in TOOLS if not args.only or t.name in args.only]
    progress = Progress(len(selected))
    start = time.monotonic()
    for tool in selected:
        stamp = bin_dir / f".{tool.name}.stamp"
        if (bin_dir / tool.name).exists() and stamp.exists() and \
                stamp.read_text() == tool_stamp(tool):
            progress.done += 1
            progress.show(f"{tool.name}: cached")
            continue
        t0 = time.monotonic()
        progress.show(f"{tool.name}: building")
        build(tool, bin_dir, log_dir)
        progress.done += 1
        progress.show(f"{tool.name}: built in {time.monotonic() - t0:.0f}s")
    progress.finish()
    sys.stderr.write(f"tools ready in {time.monotonic() - start:.0f}s\n")
    print(f"TOOLS_BIN={bin_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
