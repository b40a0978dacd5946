"""The test images themselves: a busybox base and its variants, each built by our code.

Every builder is deterministic: building twice gives the same manifest digest. The base
layer is built once per process and shared, as it would be in a real registry.
"""
from __future__ import annotations

import functools
import random
from dataclasses import replace

from tests.harness import images_shell
from tests.harness.images_rootfs import base_rootfs, effective_uid_program, script
from tests.harness.oci_image import (
    Format,
    History,
    Image,
    ImageConfig,
    Index,
    build_image,
    build_index,
    host_arch,
)
from tests.harness.oci_layer import (
    Compression,
    Entry,
    Layer,
    build_layer,
    directory,
    file,
    opaque,
    whiteout,
)

Pushable = Image | Index
BASE_CMD = ImageConfig(cmd=("sh",))


@functools.cache
def base_layer(compression: Compression = Compression.GZIP) -> Layer:
    return build_layer(base_rootfs(), compression=compression,
                       created_by="busybox-static rootfs (kubelet-py tests/harness)")


def layer(entries: list[Entry], created_by: str,
          compression: Compression = Compression.GZIP) -> Layer:
    return build_layer(entries, compression=compression, created_by=created_by)


def busybox(*, fmt: Format = Format.OCI, config: ImageConfig = BASE_CMD) -> Image:
    if fmt is Format.DOCKER:
        return build_image([base_layer()], config, fmt=fmt)
    return build_image([base_layer()], config)


@functools.cache
def _path_shell_layer() -> Layer:
    return layer(images_shell.shell_entries(),
                 "/bin/sh from Debian's busybox package: no standalone shell, $PATH lookup")


def path_shell_busybox() -> Image:
    """The base with a /bin/sh that runs commands found in $PATH, not its own applets
    (critest's default image; see tests.harness.images_shell)."""
    return with_layers([_path_shell_layer()])


def busybox_index() -> Index:
    return build_index([busybox()])


def with_layers(extra: list[Layer], config: ImageConfig = BASE_CMD,
                history: tuple[History, ...] = ()) -> Image:
    return build_image([base_layer(), *extra], config, history=history)


def user_image(user: str) -> Image:
    """The base plus a USER instruction (an empty-layer history step, like a Dockerfile)."""
    return with_layers([], replace(BASE_CMD, user=user),
                       history=(History(f"USER {user}", empty_layer=True),))


def entrypoint_image() -> Image:
    cfg = replace(BASE_CMD, entrypoint=("/bin/echo", "entrypoint"), cmd=("from", "cmd"))
    return with_layers([], cfg, history=(History('ENTRYPOINT ["/bin/echo","entrypoint"]',
                                                 empty_layer=True),))


def env_image() -> Image:
    cfg = replace(BASE_CMD, env=(*BASE_CMD.env, "GREETING=hello world", "EMPTY=",
                                 "KUBELET_PY_TEST=1"))
    return with_layers([], cfg, history=(History("ENV GREETING", empty_layer=True),))


def volume_image() -> Image:
    extra = layer([directory("data"), file("data/seed.txt", b"seeded by the image\n")],
                  "ADD data/seed.txt")
    return with_layers([extra], replace(BASE_CMD, volumes=("/data",)),
                       history=(History("VOLUME /data", empty_layer=True),))


def workdir_image() -> Image:
    extra = layer([directory("srv"), directory("srv/app"),
                   file("srv/app/marker", b"workdir\n")], "WORKDIR /srv/app")
    return with_layers([extra], replace(BASE_CMD, working_dir="/srv/app"))


def whiteout_image() -> Image:
    """Three layers over the base. Final view: /data/keep, /opq/new; /data/remove-me and
    /opq/old-* are gone (a `.wh.` file and an opaque directory), /bin/vi is whited out."""
    add = layer([directory("data"), file("data/keep", b"keep\n"),
                 file("data/remove-me", b"remove me\n"), directory("opq"),
                 file("opq/old-1", b"old\n"), file("opq/old-2", b"old\n")], "ADD data opq")
    delete = layer([directory("data"), whiteout("data/remove-me"), directory("opq"),
                    opaque("opq"), file("opq/new", b"new\n"), directory("bin"),
                    whiteout("bin/vi")], "RUN rm data/remove-me bin/vi && rm -rf opq/*")
    touch = layer([directory("data"), file("data/keep", b"kept and rewritten\n")],
                  "RUN echo rewritten > data/keep")
    return with_layers([add, delete, touch])


def zstd_image() -> Image:
    extra = layer([directory("zstd"), file("zstd/hello", b"hello from a zstd layer\n" * 64)],
                  "ADD zstd", Compression.ZSTD)
    return with_layers([extra])


def uncompressed_image() -> Image:
    return build_image([base_layer(Compression.NONE)], BASE_CMD)


def docker_image() -> Image:
    return busybox(fmt=Format.DOCKER)


def docker_list() -> Index:
    return build_index([docker_image()], fmt=Format.DOCKER)


def foreign_arch() -> str:
    return "s390x" if host_arch() != "s390x" else "amd64"


def multi_platform_index() -> Index:
    """linux/<host arch> is the runnable busybox; the other entry is a data-only image for a
    foreign architecture (no binaries: it only exists to exercise platform selection)."""
    foreign = build_image([layer([directory("etc"), file("etc/arch", b"foreign\n")],
                                 "ADD etc/arch")], ImageConfig(cmd=()),
                          architecture=foreign_arch())
    return build_index([busybox(), foreign])


def marker_image(name: str) -> Image:
    """The base plus a file named after the image (how cri-tools builds test-image-*)."""
    return with_layers([layer([file(name, f"{name}\n".encode())], f"ADD {name} {name}")])


def pause_image() -> Image:
    body = ("trap 'exit 0' TERM INT\n"
            "while :; do sleep 3600 & wait $!; done\n")
    extra = layer([script("pause", body)], "ADD pause /pause")
    return with_layers([extra], ImageConfig(user="65535:65535", entrypoint=("/pause",), cmd=()))


NGINX_PAGE = b"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n" \
             b"<body><h1>Welcome to nginx!</h1></body></html>\n"


def nginx_image(port: int) -> Image:
    """A stand-in for nginx built on busybox httpd: pid 1 is a script named `nginx` whose
    command line reads "nginx: master process ..."; it writes /var/run/nginx.pid, serves
    /usr/share/nginx/html on `port` and exits on SIGTERM/SIGQUIT."""
    body = (
        'case "$1" in "nginx: master process"*) ;; *) '
        'exec /usr/sbin/nginx "nginx: master process nginx $*" "$@" ;; esac\n'
        "echo $$ > /var/run/nginx.pid\n"
        f"httpd -f -p {port} -h /usr/share/nginx/html &\n"
        "child=$!\n"
        "trap 'kill $child; rm -f /var/run/nginx.pid; exit 0' TERM INT QUIT\n"
        "wait $child\n"
    )
    extra = layer([directory("usr"), directory("usr/sbin"), script("usr/sbin/nginx", body),
                   directory("usr/share"), directory("usr/share/nginx"),
                   directory("usr/share/nginx/html"),
                   file("usr/share/nginx/html/index.html", NGINX_PAGE)], "ADD nginx")
    cfg = ImageConfig(cmd=("nginx", "-g", "daemon off;"), exposed_ports=(f"{port}/tcp",),
                      stop_signal="SIGQUIT")
    return with_layers([extra], cfg)


def httpd_image() -> Image:
    """A stand-in for Apache httpd: logs Apache's "Command line: 'httpd -D FOREGROUND'"
    line, then serves /usr/local/apache2/htdocs on port 80 in the foreground."""
    body = ("echo \"AH00094: Command line: 'httpd -D FOREGROUND'\" >&2\n"
            "exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs\n")
    extra = layer([directory("usr"), directory("usr/local"), directory("usr/local/bin"),
                   script("usr/local/bin/httpd-foreground", body),
                   directory("usr/local/apache2"), directory("usr/local/apache2/htdocs"),
                   file("usr/local/apache2/htdocs/index.html",
                        b"<html><body><h1>It works!</h1></body></html>\n")], "ADD httpd")
    return with_layers([extra], ImageConfig(cmd=("httpd-foreground",),
                                            exposed_ports=("80/tcp",)))


def nonewprivs_image() -> Image:
    prog = file("usr/local/bin/nnp", effective_uid_program(host_arch()), mode=0o4755)
    extra = layer([directory("usr"), directory("usr/local"), directory("usr/local/bin"), prog],
                  "COPY nnp /usr/local/bin/nnp && chmod u+s")
    return with_layers([extra], ImageConfig(user="1000", cmd=("/usr/local/bin/nnp",)))


def predefined_group_image() -> Image:
    """uid 1000 `default-user` belongs to `group-defined-in-image` (gid 50000)."""
    passwd = ("root:x:0:0:root:/root:/bin/sh\n"
              "www-data:x:33:33:www-data:/var/www:/bin/false\n"
              "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    group = ("root:x:0:\nwww-data:x:33:\nusers:x:100:\ndefault-user:x:1000:\n"
             "group-defined-in-image:x:50000:default-user\nnogroup:x:65534:\n")
    extra = layer([directory("etc"), file("etc/passwd", passwd.encode()),
                   file("etc/group", group.encode()), directory("home"),
                   directory("home/default-user", uid=1000, gid=1000)],
                  "RUN adduser -u 1000 -D default-user && addgroup -g 50000 ...")
    return with_layers([extra], replace(BASE_CMD, user="1000"))


def large_image(size_mb: int, *, layers: int = 8, file_kb: int = 64, seed: int = 1) -> Image:
    """A multi-layer image of about `size_mb` MiB of uncompressed files (half random, half
    text, so compression does real work), for pull and unpack benchmarks."""
    if size_mb <= 0 or layers <= 0 or file_kb <= 0:
        raise ValueError("size_mb, layers and file_kb must be positive")
    rng = random.Random(seed)
    per_layer = size_mb * 1024 // layers // file_kb
    built: list[Layer] = []
    for index in range(layers):
        entries: list[Entry] = [directory("bulk"), directory(f"bulk/{index:02d}")]
        for n in range(max(per_layer, 1)):
            if n % 2:
                data = rng.randbytes(file_kb * 1024)
            else:
                line = f"layer {index} file {n} {rng.random()}\n".encode()
                data = (line * (file_kb * 1024 // len(line) + 1))[: file_kb * 1024]
            entries.append(file(f"bulk/{index:02d}/f{n:05d}", data))
        built.append(build_layer(entries, created_by=f"ADD bulk/{index:02d}", level=1))
    return with_layers(built)
