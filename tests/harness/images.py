"""Which images the local registry serves, under which names, and why.

Two groups are pushed:

* our own variants under ``kubelet-py/<name>:latest`` (see `LOCAL_IMAGES`), each exercising
  one feature of the image format;
* stand-ins for upstream images (see `MIRRORED`), pushed under the *same repository path*
  as upstream, so that a registry mirror ``<upstream host> -> http://<local registry>``
  resolves them: ``registry.k8s.io/pause:3.10`` is ``<local>/pause:3.10`` and
  ``docker.io/library/busybox:1.36`` is ``<local>/library/busybox:1.36``.

Notes on the critest images (cri-tools v1.36, ``pkg/validate/consts.go`` and
``pkg/framework``), for docs/critest.md:

* ``registry.k8s.io/e2e-test-images/busybox:1.29-2`` is critest's default container image.
  Ours is the busybox-static base plus a layer whose /bin/sh is Debian's dynamically linked
  busybox (with its libraries): busybox-static's shell runs its own applets instead of
  searching $PATH, so critest's MaskedPaths spec (``/bin/sh -c ls`` with /bin/ls masked
  must fail with ``/bin/sh: ls: Permission denied``) could not pass; see
  `tests.harness.images_shell`. Debian's busybox-static has no ``ipcs`` applet, which
  the "HostIpc" specs run (``ipcs -m``); the base image carries a /bin/ipcs script that
  prints the table from /proc/sysvipc/shm instead (``-m`` only).
* ``gcr.io/k8s-staging-cri-tools/test-image-user-uid`` (USER 1002),
  ``test-image-user-username`` (USER www-data), ``test-image-user-uid-group``
  (USER 1003:users) and ``test-image-user-username-group`` (USER www-data:users): the
  ImageStatus spec only reads uid/username back from the config. Upstream's group names
  are not published in the spec; ``users`` (gid 100) exists in our /etc/group.
* ``test-image-predefined-group``: uid 1000 ``default-user``, member of
  ``group-defined-in-image`` (gid 50000) in /etc/group, USER 1000.
* ``test-image-latest``, ``test-image-tag:test``, ``test-image-tag:all``,
  ``test-image-1/2/3:latest``: the base plus a file named after the image, so each is a
  different image; ``test-image-tags:1/2/3`` are one image under three tags.
* ``test-image-digest@sha256:9700f9a2...``: pulled by a fixed upstream digest; no image we
  build can have that digest, so that spec cannot pass offline (see `OFFLINE_IMPOSSIBLE`).
* ``registry.k8s.io/e2e-test-images/nginx:1.14-2``: web server on port 80 (port mapping,
  port forward) and the PID-namespace specs: pid 1 is a script named ``nginx`` whose
  command line contains "master process", it writes /var/run/nginx.pid and serves a
  "Welcome to nginx!" page with busybox httpd.
* ``gcr.io/k8s-staging-cri-tools/hostnet-nginx-<arch>``: the same on port 12003 (the
  host-network port-forward spec).
* ``registry.k8s.io/e2e-test-images/httpd:2.4.39-4``: serves port 80 and prints Apache's
  ``Command line: 'httpd -D FOREGROUND'`` line, which the multi-container log spec greps.
* ``registry.k8s.io/e2e-test-images/nonewprivs:1.3``: ``/usr/local/bin/nnp``, setuid root,
  prints ``Effective uid: N`` (a 239-byte static ELF we emit; amd64 only), USER 1000.
* ``registry.k8s.io/pause:3.10``: ``/pause`` is a shell loop that exits 0 on SIGTERM/SIGINT,
  run as 65535:65535 like upstream's.
* ``registry.k8s.io/pause:3.9`` and ``k8s.gcr.io/pause:3.9``: the same pause image; the
  image-identity specs pull it from both hosts and expect one image with two tags (both
  hosts mirror to the one local repository ``pause``, so both resolve to one digest).
* critest's ExecSync-timeout spec runs ``pgrep sleep``, another applet Debian's
  busybox-static lacks: the base image carries a /bin/pgrep script (``pgrep PATTERN``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.harness import images_build as b
from tests.harness.oci_image import host_arch

LOCAL_PREFIX = "kubelet-py"
DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")

# name -> builder, pushed as kubelet-py/<name>:latest
LOCAL_IMAGES: dict[str, Callable[[], b.Pushable]] = {
    "busybox": b.busybox,
    "user": lambda: b.user_image("1000:1000"),
    "entrypoint": b.entrypoint_image,
    "env": b.env_image,
    "volume": b.volume_image,
    "workdir": b.workdir_image,
    "whiteout": b.whiteout_image,
    "zstd": b.zstd_image,
    "uncompressed": b.uncompressed_image,
    "docker": b.docker_image,
    "docker-list": b.docker_list,
    "index": b.multi_platform_index,
    "httpd": b.httpd_image,
}

CRI_TOOLS = "gcr.io/k8s-staging-cri-tools/"
E2E = "registry.k8s.io/e2e-test-images/"


@dataclass(frozen=True)
class Mirrored:
    upstream: str
    build: Callable[[], b.Pushable]


MIRRORED: tuple[Mirrored, ...] = (
    Mirrored("registry.k8s.io/pause:3.10", b.pause_image),
    Mirrored("registry.k8s.io/pause:3.9", b.pause_image),
    Mirrored(E2E + "busybox:1.29-2", b.path_shell_busybox),
    Mirrored("docker.io/library/busybox:latest", b.busybox_index),
    Mirrored("docker.io/library/busybox:1.36", b.docker_list),
    Mirrored("docker.io/library/busybox:1.28", b.busybox),
    Mirrored(E2E + "nginx:1.14-2", lambda: b.nginx_image(80)),
    Mirrored(E2E + "httpd:2.4.39-4", b.httpd_image),
    Mirrored(E2E + "nonewprivs:1.3", b.nonewprivs_image),
    Mirrored(CRI_TOOLS + f"hostnet-nginx-{host_arch()}:latest", lambda: b.nginx_image(12003)),
    Mirrored(CRI_TOOLS + "test-image-user-uid:latest", lambda: b.user_image("1002")),
    Mirrored(CRI_TOOLS + "test-image-user-username:latest", lambda: b.user_image("www-data")),
    Mirrored(CRI_TOOLS + "test-image-user-uid-group:latest",
             lambda: b.user_image("1003:users")),
    Mirrored(CRI_TOOLS + "test-image-user-username-group:latest",
             lambda: b.user_image("www-data:users")),
    Mirrored(CRI_TOOLS + "test-image-predefined-group:latest", b.predefined_group_image),
    Mirrored(CRI_TOOLS + "test-image-latest:latest",
             lambda: b.marker_image("test-image-latest")),
    Mirrored(CRI_TOOLS + "test-image-tag:test", lambda: b.marker_image("test-image-tag")),
    Mirrored(CRI_TOOLS + "test-image-tag:all", lambda: b.marker_image("test-image-tag-all")),
    Mirrored(CRI_TOOLS + "test-image-1:latest", lambda: b.marker_image("test-image-1")),
    Mirrored(CRI_TOOLS + "test-image-2:latest", lambda: b.marker_image("test-image-2")),
    Mirrored(CRI_TOOLS + "test-image-3:latest", lambda: b.marker_image("test-image-3")),
    Mirrored(CRI_TOOLS + "test-image-tags:1", lambda: b.marker_image("test-image-tags")),
    Mirrored(CRI_TOOLS + "test-image-tags:2", lambda: b.marker_image("test-image-tags")),
    Mirrored(CRI_TOOLS + "test-image-tags:3", lambda: b.marker_image("test-image-tags")),
    Mirrored(CRI_TOOLS + "test-image-digest:latest",
             lambda: b.marker_image("test-image-digest")),
)

# Upstream references that cannot resolve offline, with the reason (for docs/critest.md).
OFFLINE_IMPOSSIBLE: dict[str, str] = {
    CRI_TOOLS + "test-image-digest@sha256:"
    "9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf":
        "pulled by a fixed upstream manifest digest; an image we build cannot have it "
        "(we push test-image-digest:latest, but the spec asks for the digest)",
}

# The upstream registry hosts the mirror configuration points at the local registry.
MIRROR_HOSTS: tuple[str, ...] = ("registry.k8s.io", "docker.io", "gcr.io", "k8s.gcr.io",
                                 "quay.io", "ghcr.io")


@dataclass(frozen=True)
class Reference:
    host: str
    repository: str
    tag: str

    @property
    def local(self) -> str:
        """`repository:tag` as pushed to (and pulled from) the local registry."""
        return f"{self.repository}:{self.tag}"


def parse_reference(ref: str) -> Reference:
    """Split a tagged reference the way the Docker CLI does (default host docker.io, Docker
    Hub's `library/` for one-component names, default tag `latest`). Digests are rejected:
    a local registry cannot serve upstream digests."""
    if "@" in ref:
        raise ValueError(f"{ref!r}: references by digest cannot be mirrored locally")
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, remainder = first, rest
    else:
        host, remainder = "docker.io", ref
    name, _, tag = remainder.rpartition(":") if ":" in remainder else (remainder, "", "latest")
    if "/" in tag or not name:
        name, tag = remainder, "latest"
    if host in DOCKER_HUB_HOSTS:
        host = "docker.io"
        if "/" not in name:
            name = "library/" + name
    if not name or name != name.lower():
        raise ValueError(f"{ref!r}: repository names are lowercase and non-empty")
    return Reference(host=host, repository=name, tag=tag)


def local_images() -> list[tuple[str, str, Callable[[], b.Pushable]]]:
    """Every (repository, tag, builder) the standard image set pushes."""
    out = [(f"{LOCAL_PREFIX}/{name}", "latest", build) for name, build in LOCAL_IMAGES.items()]
    for item in MIRRORED:
        ref = parse_reference(item.upstream)
        out.append((ref.repository, ref.tag, item.build))
    return out
