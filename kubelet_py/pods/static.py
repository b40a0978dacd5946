"""Static pods: manifests in --pod-manifest-path, run without (or beside) an API server.

Each file (YAML or JSON, dotfiles ignored) holds one Pod. Its UID is a hash of the node name
and the file's content, so an edit is a new pod; the name gets `-<node>` appended; the
`kubernetes.io/config.*` annotations say where it came from, as upstream sets them.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kubelet_py.clock import Clock, rfc3339
from kubelet_py.pods.model import Pod, pod_uid

log = logging.getLogger(__name__)

SOURCE = "kubernetes.io/config.source"
HASH = "kubernetes.io/config.hash"
SEEN = "kubernetes.io/config.seen"
MIRROR = "kubernetes.io/config.mirror"
CHECK_PERIOD = 20.0
WATCH_PERIOD = 1.0
"""Between the full re-reads every CHECK_PERIOD (upstream's fileCheckFrequency) the directory
is only stat'ed, this often, and re-read at once when a file was added, changed or removed:
upstream watches it with inotify for the same promptness."""
Handler = Callable[[str, Pod], None]


class ManifestError(ValueError):
    pass


def _defaults(pod: Pod) -> None:
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        image = c.get("image", "")
        latest = image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]
        c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")


def static_pod(doc: Any, *, node_name: str, source: str) -> Pod:
    """A manifest turned into the pod the node runs (pure)."""
    if not isinstance(doc, dict) or doc.get("kind") != "Pod":
        raise ManifestError(f"{source}: not a Pod manifest")
    pod: Pod = copy.deepcopy(doc)
    meta = pod.setdefault("metadata", {})
    if not meta.get("name"):
        raise ManifestError(f"{source}: metadata.name is required")
    if not (pod.get("spec") or {}).get("containers"):
        raise ManifestError(f"{source}: spec.containers is required")
    _defaults(pod)
    digest = hashlib.md5(usedforsecurity=False)
    digest.update(node_name.encode())
    digest.update(json.dumps(pod, sort_keys=True).encode())
    uid = digest.hexdigest()
    meta["name"] = f"{meta['name']}-{node_name}"
    meta.setdefault("namespace", "default")
    meta["uid"] = uid
    meta["annotations"] = {**(meta.get("annotations") or {}), SOURCE: "file", HASH: uid}
    pod["spec"]["nodeName"] = node_name
    pod.setdefault("status", {})
    return pod


def is_static(pod: Pod) -> bool:
    """A pod from a manifest (file or URL), not from the API server (upstream: its config
    source is not "api")."""
    source = ((pod.get("metadata") or {}).get("annotations") or {}).get(SOURCE)
    return source is not None and source != "api"


def is_mirror(pod: Pod) -> bool:
    return MIRROR in ((pod.get("metadata") or {}).get("annotations") or {})


def mirror_of(pod: Pod) -> Pod:
    """The mirror pod the API server shows for a static pod."""
    mirror = copy.deepcopy(pod)
    meta = mirror["metadata"]
    meta.pop("uid", None)
    meta.pop("resourceVersion", None)
    meta["annotations"] = {**meta["annotations"], MIRROR: meta["annotations"][HASH]}
    mirror.pop("status", None)
    mirror["apiVersion"], mirror["kind"] = "v1", "Pod"
    return mirror


class StaticPodSource:
    def __init__(self, path: Path, *, node_name: str, handler: Handler, clock: Clock,
                 period: float = CHECK_PERIOD, watch: float = WATCH_PERIOD) -> None:
        self._path = path
        self._node = node_name
        self._handler = handler
        self._clock = clock
        self._period = period
        self._watch = min(watch, period)
        self.pods: dict[str, Pod] = {}
        self._bad: set[str] = set()

    def read(self) -> dict[str, Pod]:
        pods: dict[str, Pod] = {}
        if not self._path.is_dir():
            return pods
        for file in sorted(self._path.iterdir()):
            if file.name.startswith(".") or file.suffix not in (".yaml", ".yml", ".json") \
                    or not file.is_file():
                continue
            try:
                pod = static_pod(yaml.safe_load(file.read_text()), node_name=self._node,
                                 source=str(file))
            except (OSError, yaml.YAMLError, ManifestError) as exc:
                if str(file) not in self._bad:
                    log.error("static pod manifest %s ignored: %s", file, exc)
                    self._bad.add(str(file))
                continue
            self._bad.discard(str(file))
            pod["metadata"]["annotations"][SEEN] = rfc3339(self._clock.now())
            pods[pod_uid(pod)] = pod
        return pods

    def sync_once(self) -> None:
        fresh = self.read()
        for uid, pod in self.pods.items():
            if uid not in fresh:
                self._handler("DELETED", pod)
        for uid, pod in fresh.items():
            if uid not in self.pods:
                log.info("static pod %s/%s from %s", pod["metadata"]["namespace"],
                         pod["metadata"]["name"], self._path)
                self._handler("ADDED", pod)
        self.pods = {uid: self.pods.get(uid, pod) for uid, pod in fresh.items()}

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        """What a stat of the directory shows: (name, mtime, size) of each entry."""
        try:
            entries = sorted(self._path.iterdir())
        except OSError:
            return ()
        found = []
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:
                continue
            found.append((entry.name, st.st_mtime_ns, st.st_size))
        return tuple(found)

    async def run(self) -> None:
        while True:
            before = self.signature()  # taken first: a change during the read shows next
            self.sync_once()
            waited = 0.0
            while waited < self._period:
                await self._clock.sleep(self._watch)
                waited += self._watch
                if self.signature() != before:
                    break
