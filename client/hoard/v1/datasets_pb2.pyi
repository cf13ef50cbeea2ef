from hoard.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Array(_message.Message):
    __slots__ = ("dtype", "shape", "data", "strings")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    strings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., strings: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeRef(_message.Message):
    __slots__ = ("repository", "path", "where", "dataset")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    repository: str
    path: str
    where: str
    dataset: str
    def __init__(self, repository: _Optional[str] = ..., path: _Optional[str] = ..., where: _Optional[str] = ..., dataset: _Optional[str] = ...) -> None: ...

class Slice(_message.Message):
    __slots__ = ("start", "stop", "step")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    start: int
    stop: int
    step: int
    def __init__(self, start: _Optional[int] = ..., stop: _Optional[int] = ..., step: _Optional[int] = ...) -> None: ...

class IndexList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class SelectionItem(_message.Message):
    __slots__ = ("index", "slice", "ellipsis", "indices")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    ELLIPSIS_FIELD_NUMBER: _ClassVar[int]
    INDICES_FIELD_NUMBER: _ClassVar[int]
    index: int
    slice: Slice
    ellipsis: bool
    indices: IndexList
    def __init__(self, index: _Optional[int] = ..., slice: _Optional[_Union[Slice, _Mapping]] = ..., ellipsis: _Optional[bool] = ..., indices: _Optional[_Union[IndexList, _Mapping]] = ...) -> None: ...

class Selection(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SelectionItem]
    def __init__(self, items: _Optional[_Iterable[_Union[SelectionItem, _Mapping]]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("none", "bool_value", "int_value", "float_value", "string_value", "datetime_value", "array_value", "bytes_value")
    NONE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    DATETIME_VALUE_FIELD_NUMBER: _ClassVar[int]
    ARRAY_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    none: bool
    bool_value: bool
    int_value: int
    float_value: float
    string_value: str
    datetime_value: str
    array_value: Array
    bytes_value: bytes
    def __init__(self, none: _Optional[bool] = ..., bool_value: _Optional[bool] = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., string_value: _Optional[str] = ..., datetime_value: _Optional[str] = ..., array_value: _Optional[_Union[Array, _Mapping]] = ..., bytes_value: _Optional[bytes] = ...) -> None: ...

class DatasetShape(_message.Message):
    __slots__ = ("shape", "dtype", "maxshape", "chunks", "compression")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    MAXSHAPE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    maxshape: _containers.RepeatedScalarFieldContainer[int]
    chunks: _containers.RepeatedScalarFieldContainer[int]
    compression: str
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., maxshape: _Optional[_Iterable[int]] = ..., chunks: _Optional[_Iterable[int]] = ..., compression: _Optional[str] = ...) -> None: ...

class StoreDataRequest(_message.Message):
    __slots__ = ("node", "data")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    node: NodeRef
    data: Array
    def __init__(self, node: _Optional[_Union[NodeRef, _Mapping]] = ..., data: _Optional[_Union[Array, _Mapping]] = ...) -> None: ...

class AppendDataRequest(_message.Message):
    __slots__ = ("node", "data", "grow_dimension", "close_file")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    GROW_DIMENSION_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FILE_FIELD_NUMBER: _ClassVar[int]
    node: NodeRef
    data: Array
    grow_dimension: int
    close_file: bool
    def __init__(self, node: _Optional[_Union[NodeRef, _Mapping]] = ..., data: _Optional[_Union[Array, _Mapping]] = ..., grow_dimension: _Optional[int] = ..., close_file: _Optional[bool] = ...) -> None: ...

class AppendRequest(_message.Message):
    __slots__ = ("node", "data", "grow_dimension", "sequence", "expected_length")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    GROW_DIMENSION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LENGTH_FIELD_NUMBER: _ClassVar[int]
    node: NodeRef
    data: Array
    grow_dimension: int
    sequence: int
    expected_length: int
    def __init__(self, node: _Optional[_Union[NodeRef, _Mapping]] = ..., data: _Optional[_Union[Array, _Mapping]] = ..., grow_dimension: _Optional[int] = ..., sequence: _Optional[int] = ..., expected_length: _Optional[int] = ...) -> None: ...

class AppendAck(_message.Message):
    __slots__ = ("sequence", "dataset", "shape")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    dataset: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sequence: _Optional[int] = ..., dataset: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class GetDataRequest(_message.Message):
    __slots__ = ("node", "selection", "shared_memory", "shared_memory_block_bytes")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_BLOCK_BYTES_FIELD_NUMBER: _ClassVar[int]
    node: NodeRef
    selection: Selection
    shared_memory: bool
    shared_memory_block_bytes: int
    def __init__(self, node: _Optional[_Union[NodeRef, _Mapping]] = ..., selection: _Optional[_Union[Selection, _Mapping]] = ..., shared_memory: _Optional[bool] = ..., shared_memory_block_bytes: _Optional[int] = ...) -> None: ...

class SharedMemory(_message.Message):
    __slots__ = ("name", "size", "dtype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class DataBlock(_message.Message):
    __slots__ = ("offset", "data", "shape", "shared_memory")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: Array
    shape: _containers.RepeatedScalarFieldContainer[int]
    shared_memory: SharedMemory
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[_Union[Array, _Mapping]] = ..., shape: _Optional[_Iterable[int]] = ..., shared_memory: _Optional[_Union[SharedMemory, _Mapping]] = ...) -> None: ...

class FollowRequest(_message.Message):
    __slots__ = ("node", "from_row", "grow_dimension")
    NODE_FIELD_NUMBER: _ClassVar[int]
    FROM_ROW_FIELD_NUMBER: _ClassVar[int]
    GROW_DIMENSION_FIELD_NUMBER: _ClassVar[int]
    node: NodeRef
    from_row: int
    grow_dimension: int
    def __init__(self, node: _Optional[_Union[NodeRef, _Mapping]] = ..., from_row: _Optional[int] = ..., grow_dimension: _Optional[int] = ...) -> None: ...

class SetMetadataRequest(_message.Message):
    __slots__ = ("node", "metadata", "tvb_specific_metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TVB_SPECIFIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    node: NodeRef
    metadata: _containers.MessageMap[str, Value]
    tvb_specific_metadata: bool
    def __init__(self, node: _Optional[_Union[NodeRef, _Mapping]] = ..., metadata: _Optional[_Mapping[str, Value]] = ..., tvb_specific_metadata: _Optional[bool] = ...) -> None: ...

class SetMetadataResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Metadata(_message.Message):
    __slots__ = ("metadata",)
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.MessageMap[str, Value]
    def __init__(self, metadata: _Optional[_Mapping[str, Value]] = ...) -> None: ...

class RemoveMetadataRequest(_message.Message):
    __slots__ = ("node", "key", "tvb_specific_metadata", "check_existence")
    NODE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TVB_SPECIFIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    CHECK_EXISTENCE_FIELD_NUMBER: _ClassVar[int]
    node: NodeRef
    key: str
    tvb_specific_metadata: bool
    check_existence: bool
    def __init__(self, node: _Optional[_Union[NodeRef, _Mapping]] = ..., key: _Optional[str] = ..., tvb_specific_metadata: _Optional[bool] = ..., check_existence: _Optional[bool] = ...) -> None: ...

class RemoveMetadataResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class RemoveDataResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IsValidFileResponse(_message.Message):
    __slots__ = ("valid",)
    VALID_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    def __init__(self, valid: _Optional[bool] = ...) -> None: ...

class CloseFileResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeDescription(_message.Message):
    __slots__ = ("node", "kind", "shape", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    node: str
    kind: str
    shape: DatasetShape
    attributes: _containers.MessageMap[str, Value]
    def __init__(self, node: _Optional[str] = ..., kind: _Optional[str] = ..., shape: _Optional[_Union[DatasetShape, _Mapping]] = ..., attributes: _Optional[_Mapping[str, Value]] = ...) -> None: ...

class FileDescription(_message.Message):
    __slots__ = ("path", "size", "nodes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeDescription]
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeDescription, _Mapping]]] = ...) -> None: ...

class FileEntry(_message.Message):
    __slots__ = ("path", "is_folder", "size", "modified")
    PATH_FIELD_NUMBER: _ClassVar[int]
    IS_FOLDER_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_FIELD_NUMBER: _ClassVar[int]
    path: str
    is_folder: bool
    size: int
    modified: float
    def __init__(self, path: _Optional[str] = ..., is_folder: _Optional[bool] = ..., size: _Optional[int] = ..., modified: _Optional[float] = ...) -> None: ...

class ListFilesRequest(_message.Message):
    __slots__ = ("repository", "folder", "recursive", "h5_only")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    H5_ONLY_FIELD_NUMBER: _ClassVar[int]
    repository: str
    folder: str
    recursive: bool
    h5_only: bool
    def __init__(self, repository: _Optional[str] = ..., folder: _Optional[str] = ..., recursive: _Optional[bool] = ..., h5_only: _Optional[bool] = ...) -> None: ...

class FileRequest(_message.Message):
    __slots__ = ("repository", "path")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    repository: str
    path: str
    def __init__(self, repository: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class DeleteFileResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RenameRequest(_message.Message):
    __slots__ = ("repository", "source", "destination", "overwrite")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    repository: str
    source: str
    destination: str
    overwrite: bool
    def __init__(self, repository: _Optional[str] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class RemoveFilesRequest(_message.Message):
    __slots__ = ("repository", "paths", "ignore_errors")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    IGNORE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    repository: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    ignore_errors: bool
    def __init__(self, repository: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ..., ignore_errors: _Optional[bool] = ...) -> None: ...

class RemoveFilesResponse(_message.Message):
    __slots__ = ("removed", "missing")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    removed: _containers.RepeatedScalarFieldContainer[str]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, removed: _Optional[_Iterable[str]] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class DiskUsageRequest(_message.Message):
    __slots__ = ("repository", "path", "h5_only")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    H5_ONLY_FIELD_NUMBER: _ClassVar[int]
    repository: str
    path: str
    h5_only: bool
    def __init__(self, repository: _Optional[str] = ..., path: _Optional[str] = ..., h5_only: _Optional[bool] = ...) -> None: ...

class DiskUsageResponse(_message.Message):
    __slots__ = ("bytes", "files", "kib")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    KIB_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    files: int
    kib: int
    def __init__(self, bytes: _Optional[int] = ..., files: _Optional[int] = ..., kib: _Optional[int] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("data", "size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    size: int
    def __init__(self, data: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class ImportHeader(_message.Message):
    __slots__ = ("repository", "path", "overwrite")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    repository: str
    path: str
    overwrite: bool
    def __init__(self, repository: _Optional[str] = ..., path: _Optional[str] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class ImportRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ImportHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[ImportHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("key", "size")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    key: str
    size: int
    def __init__(self, key: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class FolderRequest(_message.Message):
    __slots__ = ("repository", "path", "ignore_errors")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    IGNORE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    repository: str
    path: str
    ignore_errors: bool
    def __init__(self, repository: _Optional[str] = ..., path: _Optional[str] = ..., ignore_errors: _Optional[bool] = ...) -> None: ...

class XmlMetadata(_message.Message):
    __slots__ = ("repository", "path", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    repository: str
    path: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, repository: _Optional[str] = ..., path: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ZipFolderRequest(_message.Message):
    __slots__ = ("repository", "folder", "exclude", "need_parent_folder")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    NEED_PARENT_FOLDER_FIELD_NUMBER: _ClassVar[int]
    repository: str
    folder: str
    exclude: _containers.RepeatedScalarFieldContainer[str]
    need_parent_folder: bool
    def __init__(self, repository: _Optional[str] = ..., folder: _Optional[str] = ..., exclude: _Optional[_Iterable[str]] = ..., need_parent_folder: _Optional[bool] = ...) -> None: ...
