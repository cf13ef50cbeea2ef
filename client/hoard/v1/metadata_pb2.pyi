from hoard.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FieldValue(_message.Message):
    __slots__ = ("null", "int_value", "float_value", "string_value", "bool_value", "datetime_micros", "uint_value")
    NULL_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    DATETIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    UINT_VALUE_FIELD_NUMBER: _ClassVar[int]
    null: bool
    int_value: int
    float_value: float
    string_value: str
    bool_value: bool
    datetime_micros: int
    uint_value: int
    def __init__(self, null: _Optional[bool] = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., string_value: _Optional[str] = ..., bool_value: _Optional[bool] = ..., datetime_micros: _Optional[int] = ..., uint_value: _Optional[int] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("field", "op", "values")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    field: str
    op: str
    values: _containers.RepeatedCompositeFieldContainer[FieldValue]
    def __init__(self, field: _Optional[str] = ..., op: _Optional[str] = ..., values: _Optional[_Iterable[_Union[FieldValue, _Mapping]]] = ...) -> None: ...

class FilterList(_message.Message):
    __slots__ = ("filters",)
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("condition", "all", "any")
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    ANY_FIELD_NUMBER: _ClassVar[int]
    NOT_FIELD_NUMBER: _ClassVar[int]
    condition: Condition
    all: FilterList
    any: FilterList
    def __init__(self, condition: _Optional[_Union[Condition, _Mapping]] = ..., all: _Optional[_Union[FilterList, _Mapping]] = ..., any: _Optional[_Union[FilterList, _Mapping]] = ..., **kwargs) -> None: ...

class OrderBy(_message.Message):
    __slots__ = ("field", "descending")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    field: str
    descending: bool
    def __init__(self, field: _Optional[str] = ..., descending: _Optional[bool] = ...) -> None: ...

class FileSignature(_message.Message):
    __slots__ = ("size", "mtime_ns", "ctime_ns", "inode")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CTIME_NS_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    def __init__(self, size: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., ctime_ns: _Optional[int] = ..., inode: _Optional[int] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("machine_id", "path", "fields", "signature", "error", "has_error")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FieldValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FieldValue, _Mapping]] = ...) -> None: ...
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HAS_ERROR_FIELD_NUMBER: _ClassVar[int]
    machine_id: str
    path: str
    fields: _containers.MessageMap[str, FieldValue]
    signature: FileSignature
    error: str
    has_error: bool
    def __init__(self, machine_id: _Optional[str] = ..., path: _Optional[str] = ..., fields: _Optional[_Mapping[str, FieldValue]] = ..., signature: _Optional[_Union[FileSignature, _Mapping]] = ..., error: _Optional[str] = ..., has_error: _Optional[bool] = ...) -> None: ...

class SyncRequest(_message.Message):
    __slots__ = ("repository", "paths", "sync_subdirectories", "regex_pattern", "delete_stale_entries", "machine_id", "glob_pattern", "batch_size")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    SYNC_SUBDIRECTORIES_FIELD_NUMBER: _ClassVar[int]
    REGEX_PATTERN_FIELD_NUMBER: _ClassVar[int]
    DELETE_STALE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    GLOB_PATTERN_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    repository: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    sync_subdirectories: bool
    regex_pattern: str
    delete_stale_entries: bool
    machine_id: str
    glob_pattern: str
    batch_size: int
    def __init__(self, repository: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ..., sync_subdirectories: _Optional[bool] = ..., regex_pattern: _Optional[str] = ..., delete_stale_entries: _Optional[bool] = ..., machine_id: _Optional[str] = ..., glob_pattern: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class AddFilesRequest(_message.Message):
    __slots__ = ("repository", "files", "machine_id", "batch_size")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    repository: str
    files: _containers.RepeatedScalarFieldContainer[str]
    machine_id: str
    batch_size: int
    def __init__(self, repository: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., machine_id: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class SyncProgress(_message.Message):
    __slots__ = ("scanned", "added", "updated", "removed", "failed", "unchanged", "done")
    SCANNED_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    scanned: int
    added: int
    updated: int
    removed: int
    failed: int
    unchanged: int
    done: bool
    def __init__(self, scanned: _Optional[int] = ..., added: _Optional[int] = ..., updated: _Optional[int] = ..., removed: _Optional[int] = ..., failed: _Optional[int] = ..., unchanged: _Optional[int] = ..., done: _Optional[bool] = ...) -> None: ...

class RemoveFilesFromCacheRequest(_message.Message):
    __slots__ = ("repository", "files", "machine_id")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    repository: str
    files: _containers.RepeatedScalarFieldContainer[str]
    machine_id: str
    def __init__(self, repository: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., machine_id: _Optional[str] = ...) -> None: ...

class RemoveFilesFromCacheResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class NonSynchronizedRequest(_message.Message):
    __slots__ = ("repository", "files", "machine_id")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    repository: str
    files: _containers.RepeatedScalarFieldContainer[str]
    machine_id: str
    def __init__(self, repository: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., machine_id: _Optional[str] = ...) -> None: ...

class NonSynchronizedResponse(_message.Message):
    __slots__ = ("unsynchronized", "stale")
    UNSYNCHRONIZED_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    unsynchronized: _containers.RepeatedScalarFieldContainer[str]
    stale: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, unsynchronized: _Optional[_Iterable[str]] = ..., stale: _Optional[_Iterable[str]] = ...) -> None: ...

class SignaturesRequest(_message.Message):
    __slots__ = ("repository", "machine_id", "under")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    UNDER_FIELD_NUMBER: _ClassVar[int]
    repository: str
    machine_id: str
    under: str
    def __init__(self, repository: _Optional[str] = ..., machine_id: _Optional[str] = ..., under: _Optional[str] = ...) -> None: ...

class SignatureEntry(_message.Message):
    __slots__ = ("path", "signature", "failed")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    path: str
    signature: FileSignature
    failed: bool
    def __init__(self, path: _Optional[str] = ..., signature: _Optional[_Union[FileSignature, _Mapping]] = ..., failed: _Optional[bool] = ...) -> None: ...

class SignaturesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[SignatureEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[SignatureEntry, _Mapping]]] = ...) -> None: ...

class PushRecordsRequest(_message.Message):
    __slots__ = ("repository", "machine_id", "records")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    repository: str
    machine_id: str
    records: _containers.RepeatedCompositeFieldContainer[Record]
    def __init__(self, repository: _Optional[str] = ..., machine_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ...) -> None: ...

class RemoveRecordsRequest(_message.Message):
    __slots__ = ("repository", "machine_id", "paths")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    repository: str
    machine_id: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[str] = ..., machine_id: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ...) -> None: ...

class WriteCounts(_message.Message):
    __slots__ = ("added", "updated", "removed")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    added: int
    updated: int
    removed: int
    def __init__(self, added: _Optional[int] = ..., updated: _Optional[int] = ..., removed: _Optional[int] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("repository", "filter", "text", "order_by", "limit", "page_token", "output", "fields")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    repository: str
    filter: Filter
    text: str
    order_by: _containers.RepeatedCompositeFieldContainer[OrderBy]
    limit: int
    page_token: str
    output: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., text: _Optional[str] = ..., order_by: _Optional[_Iterable[_Union[OrderBy, _Mapping]]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., output: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CountRequest(_message.Message):
    __slots__ = ("repository", "filter", "text")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    repository: str
    filter: Filter
    text: str
    def __init__(self, repository: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., text: _Optional[str] = ...) -> None: ...

class CountResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class SchemaRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: str
    def __init__(self, repository: _Optional[str] = ...) -> None: ...

class FieldTypeCount(_message.Message):
    __slots__ = ("type", "count")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    type: str
    count: int
    def __init__(self, type: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class FieldSchema(_message.Message):
    __slots__ = ("name", "types", "total")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    types: _containers.RepeatedCompositeFieldContainer[FieldTypeCount]
    total: int
    def __init__(self, name: _Optional[str] = ..., types: _Optional[_Iterable[_Union[FieldTypeCount, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class SchemaResponse(_message.Message):
    __slots__ = ("fields",)
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[FieldSchema]
    def __init__(self, fields: _Optional[_Iterable[_Union[FieldSchema, _Mapping]]] = ...) -> None: ...

class ReadFileRequest(_message.Message):
    __slots__ = ("repository", "path")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    repository: str
    path: str
    def __init__(self, repository: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class ReadFileChunk(_message.Message):
    __slots__ = ("data", "size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    size: int
    def __init__(self, data: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...
