from hoard.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PutHeader(_message.Message):
    __slots__ = ("repository", "expected_key", "size")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    repository: str
    expected_key: str
    size: int
    def __init__(self, repository: _Optional[str] = ..., expected_key: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class PutFinish(_message.Message):
    __slots__ = ("size",)
    SIZE_FIELD_NUMBER: _ClassVar[int]
    size: int
    def __init__(self, size: _Optional[int] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("header", "chunk", "finish")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    header: PutHeader
    chunk: bytes
    finish: PutFinish
    def __init__(self, header: _Optional[_Union[PutHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., finish: _Optional[_Union[PutFinish, _Mapping]] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ("key", "raw_size", "created")
    KEY_FIELD_NUMBER: _ClassVar[int]
    RAW_SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    key: str
    raw_size: int
    created: bool
    def __init__(self, key: _Optional[str] = ..., raw_size: _Optional[int] = ..., created: _Optional[bool] = ...) -> None: ...

class PutBatchRequest(_message.Message):
    __slots__ = ("repository", "objects")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    repository: str
    objects: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, repository: _Optional[str] = ..., objects: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PutBatchResponse(_message.Message):
    __slots__ = ("keys", "created")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    created: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., created: _Optional[_Iterable[bool]] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("repository", "key", "offset", "length")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    repository: str
    key: str
    offset: int
    length: int
    def __init__(self, repository: _Optional[str] = ..., key: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ("data", "object_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OBJECT_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    object_size: int
    def __init__(self, data: _Optional[bytes] = ..., object_size: _Optional[int] = ...) -> None: ...

class ReadManyRequest(_message.Message):
    __slots__ = ("repository", "keys", "inline_limit")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    INLINE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    inline_limit: int
    def __init__(self, repository: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., inline_limit: _Optional[int] = ...) -> None: ...

class ReadManyResponse(_message.Message):
    __slots__ = ("keys", "sizes", "inlined", "data")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    INLINED_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    sizes: _containers.RepeatedScalarFieldContainer[int]
    inlined: _containers.RepeatedScalarFieldContainer[bool]
    data: bytes
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., sizes: _Optional[_Iterable[int]] = ..., inlined: _Optional[_Iterable[bool]] = ..., data: _Optional[bytes] = ...) -> None: ...

class HasRequest(_message.Message):
    __slots__ = ("repository", "keys")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    repository: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class HasResponse(_message.Message):
    __slots__ = ("exists",)
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    exists: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, exists: _Optional[_Iterable[bool]] = ...) -> None: ...

class StatRequest(_message.Message):
    __slots__ = ("repository", "keys")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    repository: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class ObjectStat(_message.Message):
    __slots__ = ("key", "exists", "raw_size", "stored_size", "encoding", "pack_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    RAW_SIZE_FIELD_NUMBER: _ClassVar[int]
    STORED_SIZE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    PACK_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    exists: bool
    raw_size: int
    stored_size: int
    encoding: str
    pack_id: int
    def __init__(self, key: _Optional[str] = ..., exists: _Optional[bool] = ..., raw_size: _Optional[int] = ..., stored_size: _Optional[int] = ..., encoding: _Optional[str] = ..., pack_id: _Optional[int] = ...) -> None: ...

class StatResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: _containers.RepeatedCompositeFieldContainer[ObjectStat]
    def __init__(self, stats: _Optional[_Iterable[_Union[ObjectStat, _Mapping]]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("repository", "page_size", "page_token")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    repository: str
    page_size: int
    page_token: str
    def __init__(self, repository: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("keys", "next_page_token")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("repository", "keys", "require_all")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_ALL_FIELD_NUMBER: _ClassVar[int]
    repository: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    require_all: bool
    def __init__(self, repository: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., require_all: _Optional[bool] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "missing")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted: _Optional[_Iterable[str]] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ("repository", "detailed")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    DETAILED_FIELD_NUMBER: _ClassVar[int]
    repository: str
    detailed: bool
    def __init__(self, repository: _Optional[str] = ..., detailed: _Optional[bool] = ...) -> None: ...

class PackInfo(_message.Message):
    __slots__ = ("pack_id", "size", "live_bytes", "dead_bytes", "single_object")
    PACK_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LIVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    SINGLE_OBJECT_FIELD_NUMBER: _ClassVar[int]
    pack_id: int
    size: int
    live_bytes: int
    dead_bytes: int
    single_object: bool
    def __init__(self, pack_id: _Optional[int] = ..., size: _Optional[int] = ..., live_bytes: _Optional[int] = ..., dead_bytes: _Optional[int] = ..., single_object: _Optional[bool] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("repository", "uuid", "key_format", "object_count", "raw_bytes", "stored_bytes", "on_disk_bytes", "pack_count", "reclaimable_bytes", "has_dictionary", "packs", "compression_ratio", "last_maintenance", "last_verification", "last_verification_errors", "dataset_files", "dataset_bytes", "metadata_records")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    KEY_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OBJECT_COUNT_FIELD_NUMBER: _ClassVar[int]
    RAW_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ON_DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    PACK_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECLAIMABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    HAS_DICTIONARY_FIELD_NUMBER: _ClassVar[int]
    PACKS_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_RATIO_FIELD_NUMBER: _ClassVar[int]
    LAST_MAINTENANCE_FIELD_NUMBER: _ClassVar[int]
    LAST_VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    LAST_VERIFICATION_ERRORS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FILES_FIELD_NUMBER: _ClassVar[int]
    DATASET_BYTES_FIELD_NUMBER: _ClassVar[int]
    METADATA_RECORDS_FIELD_NUMBER: _ClassVar[int]
    repository: str
    uuid: str
    key_format: str
    object_count: int
    raw_bytes: int
    stored_bytes: int
    on_disk_bytes: int
    pack_count: int
    reclaimable_bytes: int
    has_dictionary: bool
    packs: _containers.RepeatedCompositeFieldContainer[PackInfo]
    compression_ratio: float
    last_maintenance: float
    last_verification: float
    last_verification_errors: int
    dataset_files: int
    dataset_bytes: int
    metadata_records: int
    def __init__(self, repository: _Optional[str] = ..., uuid: _Optional[str] = ..., key_format: _Optional[str] = ..., object_count: _Optional[int] = ..., raw_bytes: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., on_disk_bytes: _Optional[int] = ..., pack_count: _Optional[int] = ..., reclaimable_bytes: _Optional[int] = ..., has_dictionary: _Optional[bool] = ..., packs: _Optional[_Iterable[_Union[PackInfo, _Mapping]]] = ..., compression_ratio: _Optional[float] = ..., last_maintenance: _Optional[float] = ..., last_verification: _Optional[float] = ..., last_verification_errors: _Optional[int] = ..., dataset_files: _Optional[int] = ..., dataset_bytes: _Optional[int] = ..., metadata_records: _Optional[int] = ...) -> None: ...

class MaintainRequest(_message.Message):
    __slots__ = ("repository", "dry_run", "live", "dead_fraction", "max_packs")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    DEAD_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MAX_PACKS_FIELD_NUMBER: _ClassVar[int]
    repository: str
    dry_run: bool
    live: bool
    dead_fraction: float
    max_packs: int
    def __init__(self, repository: _Optional[str] = ..., dry_run: _Optional[bool] = ..., live: _Optional[bool] = ..., dead_fraction: _Optional[float] = ..., max_packs: _Optional[int] = ...) -> None: ...

class MaintainProgress(_message.Message):
    __slots__ = ("stage", "message", "done", "total", "reclaimable_bytes", "reclaimed_bytes", "moved_bytes", "moved_objects", "dry_run", "problems", "problem_count")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RECLAIMABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECLAIMED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MOVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MOVED_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    stage: str
    message: str
    done: int
    total: int
    reclaimable_bytes: int
    reclaimed_bytes: int
    moved_bytes: int
    moved_objects: int
    dry_run: bool
    problems: _containers.RepeatedCompositeFieldContainer[Problem]
    problem_count: int
    def __init__(self, stage: _Optional[str] = ..., message: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., reclaimable_bytes: _Optional[int] = ..., reclaimed_bytes: _Optional[int] = ..., moved_bytes: _Optional[int] = ..., moved_objects: _Optional[int] = ..., dry_run: _Optional[bool] = ..., problems: _Optional[_Iterable[_Union[Problem, _Mapping]]] = ..., problem_count: _Optional[int] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("repository", "pack_id", "sample")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PACK_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    repository: str
    pack_id: int
    sample: float
    def __init__(self, repository: _Optional[str] = ..., pack_id: _Optional[int] = ..., sample: _Optional[float] = ...) -> None: ...

class Problem(_message.Message):
    __slots__ = ("key", "pack_id", "problem", "path")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PACK_ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    key: str
    pack_id: int
    problem: str
    path: str
    def __init__(self, key: _Optional[str] = ..., pack_id: _Optional[int] = ..., problem: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class VerifyProgress(_message.Message):
    __slots__ = ("checked_objects", "total_objects", "checked_bytes", "problems", "done", "problem_count")
    CHECKED_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    CHECKED_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    checked_objects: int
    total_objects: int
    checked_bytes: int
    problems: _containers.RepeatedCompositeFieldContainer[Problem]
    done: bool
    problem_count: int
    def __init__(self, checked_objects: _Optional[int] = ..., total_objects: _Optional[int] = ..., checked_bytes: _Optional[int] = ..., problems: _Optional[_Iterable[_Union[Problem, _Mapping]]] = ..., done: _Optional[bool] = ..., problem_count: _Optional[int] = ...) -> None: ...

class BackupRequest(_message.Message):
    __slots__ = ("repository", "destination")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    repository: str
    destination: str
    def __init__(self, repository: _Optional[str] = ..., destination: _Optional[str] = ...) -> None: ...

class BackupProgress(_message.Message):
    __slots__ = ("stage", "message", "packs_total", "packs_copied", "packs_unchanged", "bytes_copied", "bytes_total", "objects", "files_copied", "file_bytes")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PACKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PACKS_COPIED_FIELD_NUMBER: _ClassVar[int]
    PACKS_UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    BYTES_COPIED_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    FILES_COPIED_FIELD_NUMBER: _ClassVar[int]
    FILE_BYTES_FIELD_NUMBER: _ClassVar[int]
    stage: str
    message: str
    packs_total: int
    packs_copied: int
    packs_unchanged: int
    bytes_copied: int
    bytes_total: int
    objects: int
    files_copied: int
    file_bytes: int
    def __init__(self, stage: _Optional[str] = ..., message: _Optional[str] = ..., packs_total: _Optional[int] = ..., packs_copied: _Optional[int] = ..., packs_unchanged: _Optional[int] = ..., bytes_copied: _Optional[int] = ..., bytes_total: _Optional[int] = ..., objects: _Optional[int] = ..., files_copied: _Optional[int] = ..., file_bytes: _Optional[int] = ...) -> None: ...
