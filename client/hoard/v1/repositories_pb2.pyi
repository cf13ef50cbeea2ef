from hoard.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RepositoryInfo(_message.Message):
    __slots__ = ("name", "uuid", "key_format", "created_at", "quota_bytes", "used_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    KEY_FORMAT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    uuid: str
    key_format: str
    created_at: float
    quota_bytes: int
    used_bytes: int
    def __init__(self, name: _Optional[str] = ..., uuid: _Optional[str] = ..., key_format: _Optional[str] = ..., created_at: _Optional[float] = ..., quota_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ...) -> None: ...

class CreateRepositoryRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: str
    def __init__(self, repository: _Optional[str] = ...) -> None: ...

class GetRepositoryRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: str
    def __init__(self, repository: _Optional[str] = ...) -> None: ...

class ListRepositoriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRepositoriesResponse(_message.Message):
    __slots__ = ("repositories",)
    REPOSITORIES_FIELD_NUMBER: _ClassVar[int]
    repositories: _containers.RepeatedCompositeFieldContainer[RepositoryInfo]
    def __init__(self, repositories: _Optional[_Iterable[_Union[RepositoryInfo, _Mapping]]] = ...) -> None: ...

class EraseRepositoryRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: str
    def __init__(self, repository: _Optional[str] = ...) -> None: ...

class EraseRepositoryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetRepositoryQuotaRequest(_message.Message):
    __slots__ = ("repository", "quota_bytes")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    repository: str
    quota_bytes: int
    def __init__(self, repository: _Optional[str] = ..., quota_bytes: _Optional[int] = ...) -> None: ...
