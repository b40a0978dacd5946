from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Credentials(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class PullImageRequest(_message.Message):
    __slots__ = ("ref", "credentials")
    REF_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    credentials: Credentials
    def __init__(self, ref: _Optional[str] = ..., credentials: _Optional[_Union[Credentials, _Mapping]] = ...) -> None: ...

class PullProgress(_message.Message):
    __slots__ = ("phase", "layer", "current", "total", "image_id")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    phase: str
    layer: str
    current: int
    total: int
    image_id: str
    def __init__(self, phase: _Optional[str] = ..., layer: _Optional[str] = ..., current: _Optional[int] = ..., total: _Optional[int] = ..., image_id: _Optional[str] = ...) -> None: ...

class InspectImageRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class LayerInfo(_message.Message):
    __slots__ = ("blob", "blob_size", "media_type", "diff_id", "chain_id")
    BLOB_FIELD_NUMBER: _ClassVar[int]
    BLOB_SIZE_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DIFF_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    blob: str
    blob_size: int
    media_type: str
    diff_id: str
    chain_id: str
    def __init__(self, blob: _Optional[str] = ..., blob_size: _Optional[int] = ..., media_type: _Optional[str] = ..., diff_id: _Optional[str] = ..., chain_id: _Optional[str] = ...) -> None: ...

class ImageConfig(_message.Message):
    __slots__ = ("os", "architecture", "user", "env", "entrypoint", "cmd", "working_dir", "labels", "exposed_ports", "volumes", "stop_signal", "created")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    CMD_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EXPOSED_PORTS_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    os: str
    architecture: str
    user: str
    env: _containers.RepeatedScalarFieldContainer[str]
    entrypoint: _containers.RepeatedScalarFieldContainer[str]
    cmd: _containers.RepeatedScalarFieldContainer[str]
    working_dir: str
    labels: _containers.ScalarMap[str, str]
    exposed_ports: _containers.RepeatedScalarFieldContainer[str]
    volumes: _containers.RepeatedScalarFieldContainer[str]
    stop_signal: str
    created: str
    def __init__(self, os: _Optional[str] = ..., architecture: _Optional[str] = ..., user: _Optional[str] = ..., env: _Optional[_Iterable[str]] = ..., entrypoint: _Optional[_Iterable[str]] = ..., cmd: _Optional[_Iterable[str]] = ..., working_dir: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., exposed_ports: _Optional[_Iterable[str]] = ..., volumes: _Optional[_Iterable[str]] = ..., stop_signal: _Optional[str] = ..., created: _Optional[str] = ...) -> None: ...

class ImageDetail(_message.Message):
    __slots__ = ("id", "repo_tags", "repo_digests", "size", "manifest", "index", "layers", "config", "pulled_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    REPO_TAGS_FIELD_NUMBER: _ClassVar[int]
    REPO_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PULLED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    repo_tags: _containers.RepeatedScalarFieldContainer[str]
    repo_digests: _containers.RepeatedScalarFieldContainer[str]
    size: int
    manifest: str
    index: str
    layers: _containers.RepeatedCompositeFieldContainer[LayerInfo]
    config: ImageConfig
    pulled_at: float
    def __init__(self, id: _Optional[str] = ..., repo_tags: _Optional[_Iterable[str]] = ..., repo_digests: _Optional[_Iterable[str]] = ..., size: _Optional[int] = ..., manifest: _Optional[str] = ..., index: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[LayerInfo, _Mapping]]] = ..., config: _Optional[_Union[ImageConfig, _Mapping]] = ..., pulled_at: _Optional[float] = ...) -> None: ...

class RemoveImageRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class RemoveImageResponse(_message.Message):
    __slots__ = ("untagged", "deleted")
    UNTAGGED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    untagged: _containers.RepeatedScalarFieldContainer[str]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, untagged: _Optional[_Iterable[str]] = ..., deleted: _Optional[_Iterable[str]] = ...) -> None: ...

class LayerGraphRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LayerNode(_message.Message):
    __slots__ = ("chain_id", "diff_id", "size", "used_by", "tops", "children")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    DIFF_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    USED_BY_FIELD_NUMBER: _ClassVar[int]
    TOPS_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    chain_id: str
    diff_id: str
    size: int
    used_by: _containers.RepeatedScalarFieldContainer[str]
    tops: _containers.RepeatedScalarFieldContainer[str]
    children: _containers.RepeatedCompositeFieldContainer[LayerNode]
    def __init__(self, chain_id: _Optional[str] = ..., diff_id: _Optional[str] = ..., size: _Optional[int] = ..., used_by: _Optional[_Iterable[str]] = ..., tops: _Optional[_Iterable[str]] = ..., children: _Optional[_Iterable[_Union[LayerNode, _Mapping]]] = ...) -> None: ...

class LayerGraphResponse(_message.Message):
    __slots__ = ("roots",)
    ROOTS_FIELD_NUMBER: _ClassVar[int]
    roots: _containers.RepeatedCompositeFieldContainer[LayerNode]
    def __init__(self, roots: _Optional[_Iterable[_Union[LayerNode, _Mapping]]] = ...) -> None: ...

class ArchiveChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class LoadedImage(_message.Message):
    __slots__ = ("id", "repo_tags")
    ID_FIELD_NUMBER: _ClassVar[int]
    REPO_TAGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    repo_tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., repo_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class LoadImagesResponse(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[LoadedImage]
    def __init__(self, images: _Optional[_Iterable[_Union[LoadedImage, _Mapping]]] = ...) -> None: ...

class SaveImagesRequest(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, refs: _Optional[_Iterable[str]] = ...) -> None: ...
