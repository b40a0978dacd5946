"""An in-memory API server double for the node controllers (get/create/replace/patch)."""
from __future__ import annotations

import copy
import itertools
from typing import Any

from kubelet_py.client.errors import ApiError, Conflict, NotFound

Obj = dict[str, Any]


def merge(base: Obj, patch: Obj) -> Obj:
    """Merge patch, with strategic merge for lists of dicts having a `type` key."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        old = out.get(key)
        if value is None:  # null deletes the field (JSON merge and strategic merge)
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(old, dict):
            out[key] = merge(old, value)
        elif (isinstance(value, list) and isinstance(old, list) and value
              and all(isinstance(v, dict) and "type" in v for v in value)):
            by_type = {o["type"]: o for o in old}
            for item in value:
                by_type[item["type"]] = {**by_type.get(item["type"], {}), **item}
            out[key] = list(by_type.values())
        else:
            out[key] = copy.deepcopy(value)
    return out


class FakeRest:
    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[tuple[str, str], ApiError] = {}
        self._rv = itertools.count(1)
        self.server = "https://fake"

    def _raise(self, verb: str, path: str) -> None:
        self.calls.append((verb, path))
        err = self.fail.get((verb, path))
        if err is not None:
            raise err

    def _stamp(self, obj: Obj) -> Obj:
        obj.setdefault("metadata", {})["resourceVersion"] = str(next(self._rv))
        obj["metadata"].setdefault("uid", f"uid-{obj['metadata'].get('name')}")
        return copy.deepcopy(obj)

    async def get(self, path: str, *, params: Any = None) -> Obj:
        self._raise("GET", path)
        if path not in self.objects:
            raise NotFound(404, "NotFound", path)
        return copy.deepcopy(self.objects[path])

    async def create(self, path: str, body: Obj) -> Obj:
        self._raise("POST", path)
        key = f"{path}/{body['metadata']['name']}"
        if key in self.objects:
            raise Conflict(409, "AlreadyExists", key)
        self.objects[key] = copy.deepcopy(body)
        return self._stamp(self.objects[key])

    async def replace(self, path: str, body: Obj) -> Obj:
        self._raise("PUT", path)
        if path not in self.objects:
            raise NotFound(404, "NotFound", path)
        if body["metadata"].get("resourceVersion") != \
                self.objects[path]["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "stale resourceVersion")
        self.objects[path] = copy.deepcopy(body)
        return self._stamp(self.objects[path])

    async def patch(self, path: str, body: Obj, *, content_type: str = "") -> Obj:
        self._raise("PATCH", path)
        target = path.removesuffix("/status")
        if target not in self.objects:
            raise NotFound(404, "NotFound", path)
        self.objects[target] = merge(self.objects[target], body)
        return self._stamp(self.objects[target])

    async def delete(self, path: str, body: Obj | None = None) -> Obj:
        self._raise("DELETE", path)
        if path not in self.objects:
            raise NotFound(404, "NotFound", path)
        return self.objects.pop(path)
