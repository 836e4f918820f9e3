import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from stonetown.api.gen.stonetown.v1 import core_pb2 as _core_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WriteRelationshipsRequest(_message.Message):
    __slots__ = ("updates", "optional_preconditions")
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_PRECONDITIONS_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[_core_pb2.RelationshipUpdate]
    optional_preconditions: _containers.RepeatedCompositeFieldContainer[_core_pb2.Precondition]
    def __init__(self, updates: _Optional[_Iterable[_Union[_core_pb2.RelationshipUpdate, _Mapping]]] = ..., optional_preconditions: _Optional[_Iterable[_Union[_core_pb2.Precondition, _Mapping]]] = ...) -> None: ...

class WriteRelationshipsResponse(_message.Message):
    __slots__ = ("written_at",)
    WRITTEN_AT_FIELD_NUMBER: _ClassVar[int]
    written_at: _core_pb2.ZedToken
    def __init__(self, written_at: _Optional[_Union[_core_pb2.ZedToken, _Mapping]] = ...) -> None: ...

class ImportRelationshipsRequest(_message.Message):
    __slots__ = ("relationships",)
    RELATIONSHIPS_FIELD_NUMBER: _ClassVar[int]
    relationships: _containers.RepeatedCompositeFieldContainer[_core_pb2.Relationship]
    def __init__(self, relationships: _Optional[_Iterable[_Union[_core_pb2.Relationship, _Mapping]]] = ...) -> None: ...

class ImportRelationshipsResponse(_message.Message):
    __slots__ = ("num_loaded", "written_at")
    NUM_LOADED_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_AT_FIELD_NUMBER: _ClassVar[int]
    num_loaded: int
    written_at: _core_pb2.ZedToken
    def __init__(self, num_loaded: _Optional[int] = ..., written_at: _Optional[_Union[_core_pb2.ZedToken, _Mapping]] = ...) -> None: ...

class ReadRelationshipsRequest(_message.Message):
    __slots__ = ("consistency", "relationship_filter", "optional_limit", "optional_cursor")
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    RELATIONSHIP_FILTER_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_CURSOR_FIELD_NUMBER: _ClassVar[int]
    consistency: _core_pb2.Consistency
    relationship_filter: _core_pb2.RelationshipFilter
    optional_limit: int
    optional_cursor: _core_pb2.Cursor
    def __init__(self, consistency: _Optional[_Union[_core_pb2.Consistency, _Mapping]] = ..., relationship_filter: _Optional[_Union[_core_pb2.RelationshipFilter, _Mapping]] = ..., optional_limit: _Optional[int] = ..., optional_cursor: _Optional[_Union[_core_pb2.Cursor, _Mapping]] = ...) -> None: ...

class ReadRelationshipsResponse(_message.Message):
    __slots__ = ("read_at", "relationship", "after_result_cursor")
    READ_AT_FIELD_NUMBER: _ClassVar[int]
    RELATIONSHIP_FIELD_NUMBER: _ClassVar[int]
    AFTER_RESULT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    read_at: _core_pb2.ZedToken
    relationship: _core_pb2.Relationship
    after_result_cursor: _core_pb2.Cursor
    def __init__(self, read_at: _Optional[_Union[_core_pb2.ZedToken, _Mapping]] = ..., relationship: _Optional[_Union[_core_pb2.Relationship, _Mapping]] = ..., after_result_cursor: _Optional[_Union[_core_pb2.Cursor, _Mapping]] = ...) -> None: ...

class DeleteRelationshipsRequest(_message.Message):
    __slots__ = ("relationship_filter", "optional_preconditions", "optional_limit")
    RELATIONSHIP_FILTER_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_PRECONDITIONS_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    relationship_filter: _core_pb2.RelationshipFilter
    optional_preconditions: _containers.RepeatedCompositeFieldContainer[_core_pb2.Precondition]
    optional_limit: int
    def __init__(self, relationship_filter: _Optional[_Union[_core_pb2.RelationshipFilter, _Mapping]] = ..., optional_preconditions: _Optional[_Iterable[_Union[_core_pb2.Precondition, _Mapping]]] = ..., optional_limit: _Optional[int] = ...) -> None: ...

class DeleteRelationshipsResponse(_message.Message):
    __slots__ = ("deleted_at", "relationships_deleted_count", "deletion_progress")
    class DeletionProgress(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DELETION_PROGRESS_UNSPECIFIED: _ClassVar[DeleteRelationshipsResponse.DeletionProgress]
        DELETION_PROGRESS_COMPLETE: _ClassVar[DeleteRelationshipsResponse.DeletionProgress]
        DELETION_PROGRESS_PARTIAL: _ClassVar[DeleteRelationshipsResponse.DeletionProgress]
    DELETION_PROGRESS_UNSPECIFIED: DeleteRelationshipsResponse.DeletionProgress
    DELETION_PROGRESS_COMPLETE: DeleteRelationshipsResponse.DeletionProgress
    DELETION_PROGRESS_PARTIAL: DeleteRelationshipsResponse.DeletionProgress
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    RELATIONSHIPS_DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    DELETION_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    deleted_at: _core_pb2.ZedToken
    relationships_deleted_count: int
    deletion_progress: DeleteRelationshipsResponse.DeletionProgress
    def __init__(self, deleted_at: _Optional[_Union[_core_pb2.ZedToken, _Mapping]] = ..., relationships_deleted_count: _Optional[int] = ..., deletion_progress: _Optional[_Union[DeleteRelationshipsResponse.DeletionProgress, str]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("optional_object_types", "optional_start_cursor")
    OPTIONAL_OBJECT_TYPES_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_START_CURSOR_FIELD_NUMBER: _ClassVar[int]
    optional_object_types: _containers.RepeatedScalarFieldContainer[str]
    optional_start_cursor: _core_pb2.ZedToken
    def __init__(self, optional_object_types: _Optional[_Iterable[str]] = ..., optional_start_cursor: _Optional[_Union[_core_pb2.ZedToken, _Mapping]] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("updates", "changes_through", "schema_changed", "committed_at")
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    CHANGES_THROUGH_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_CHANGED_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[_core_pb2.RelationshipUpdate]
    changes_through: _core_pb2.ZedToken
    schema_changed: bool
    committed_at: _timestamp_pb2.Timestamp
    def __init__(self, updates: _Optional[_Iterable[_Union[_core_pb2.RelationshipUpdate, _Mapping]]] = ..., changes_through: _Optional[_Union[_core_pb2.ZedToken, _Mapping]] = ..., schema_changed: _Optional[bool] = ..., committed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
