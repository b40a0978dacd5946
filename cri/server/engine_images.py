"""ImagePort over the engine's image service (engine.images.ImageService)."""
from __future__ import annotations

from collections.abc import Sequence

from cri.server.ports import FilesystemUsage, ImageRecord, RegistryAuth
from engine.images import AuthConfig, Image, ImageService


def user_of(user: str) -> tuple[int | None, str]:
    """The image config's `user` ("1000", "1000:50", "nobody", "nobody:grp") split into
    (uid, username): a numeric user goes to uid, a name to username."""
    name = user.split(":", 1)[0]
    if not name:
        return None, ""
    if name.isdigit():
        return int(name), ""
    return None, name


def to_record(image: Image) -> ImageRecord:
    uid, username = user_of(image.config.user)
    return ImageRecord(id=image.id, repo_tags=tuple(image.repo_tags),
                       repo_digests=tuple(image.repo_digests), size=image.size,
                       uid=uid, username=username)


class EngineImages:
    def __init__(self, service: ImageService) -> None:
        self._service = service

    def list_images(self) -> Sequence[ImageRecord]:
        return [to_record(i) for i in self._service.list()]

    def image_status(self, ref: str) -> ImageRecord | None:
        image = self._service.status(ref)
        return None if image is None else to_record(image)

    def pull_image(self, ref: str, *, auth: RegistryAuth | None) -> str:
        engine_auth = None if auth is None else AuthConfig(
            username=auth.username, password=auth.password, auth=auth.auth,
            identity_token=auth.identity_token, registry_token=auth.registry_token)
        return self._service.pull(ref, engine_auth).id

    def remove_image(self, ref: str) -> None:
        self._service.remove(ref)

    def image_fs_usage(self) -> Sequence[FilesystemUsage]:
        info = self._service.fs_info()
        return [FilesystemUsage(mountpoint=info.mountpoint, used_bytes=info.used_bytes,
                                inodes_used=info.inodes_used, timestamp_ns=info.timestamp_ns)]
