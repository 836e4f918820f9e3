import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ZedToken(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class Cursor(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class Consistency(_message.Message):
    __slots__ = ("minimize_latency", "at_least_as_fresh", "at_exact_snapshot", "fully_consistent")
    MINIMIZE_LATENCY_FIELD_NUMBER: _ClassVar[int]
    AT_LEAST_AS_FRESH_FIELD_NUMBER: _ClassVar[int]
    AT_EXACT_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    FULLY_CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    minimize_latency: bool
    at_least_as_fresh: ZedToken
    at_exact_snapshot: ZedToken
    fully_consistent: bool
    def __init__(self, minimize_latency: _Optional[bool] = ..., at_least_as_fresh: _Optional[_Union[ZedToken, _Mapping]] = ..., at_exact_snapshot: _Optional[_Union[ZedToken, _Mapping]] = ..., fully_consistent: _Optional[bool] = ...) -> None: ...

class ObjectReference(_message.Message):
    __slots__ = ("object_type", "object_id")
    OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    object_type: str
    object_id: str
    def __init__(self, object_type: _Optional[str] = ..., object_id: _Optional[str] = ...) -> None: ...

class SubjectReference(_message.Message):
    __slots__ = ("object", "optional_relation")
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_RELATION_FIELD_NUMBER: _ClassVar[int]
    object: ObjectReference
    optional_relation: str
    def __init__(self, object: _Optional[_Union[ObjectReference, _Mapping]] = ..., optional_relation: _Optional[str] = ...) -> None: ...

class ContextualizedCaveat(_message.Message):
    __slots__ = ("caveat_name", "context")
    CAVEAT_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    caveat_name: str
    context: _struct_pb2.Struct
    def __init__(self, caveat_name: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Relationship(_message.Message):
    __slots__ = ("resource", "relation", "subject", "optional_caveat", "optional_expires_at")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_CAVEAT_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    resource: ObjectReference
    relation: str
    subject: SubjectReference
    optional_caveat: ContextualizedCaveat
    optional_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, resource: _Optional[_Union[ObjectReference, _Mapping]] = ..., relation: _Optional[str] = ..., subject: _Optional[_Union[SubjectReference, _Mapping]] = ..., optional_caveat: _Optional[_Union[ContextualizedCaveat, _Mapping]] = ..., optional_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RelationshipUpdate(_message.Message):
    __slots__ = ("operation", "relationship")
    class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OPERATION_UNSPECIFIED: _ClassVar[RelationshipUpdate.Operation]
        OPERATION_CREATE: _ClassVar[RelationshipUpdate.Operation]
        OPERATION_TOUCH: _ClassVar[RelationshipUpdate.Operation]
        OPERATION_DELETE: _ClassVar[RelationshipUpdate.Operation]
    OPERATION_UNSPECIFIED: RelationshipUpdate.Operation
    OPERATION_CREATE: RelationshipUpdate.Operation
    OPERATION_TOUCH: RelationshipUpdate.Operation
    OPERATION_DELETE: RelationshipUpdate.Operation
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    RELATIONSHIP_FIELD_NUMBER: _ClassVar[int]
    operation: RelationshipUpdate.Operation
    relationship: Relationship
    def __init__(self, operation: _Optional[_Union[RelationshipUpdate.Operation, str]] = ..., relationship: _Optional[_Union[Relationship, _Mapping]] = ...) -> None: ...

class SubjectFilter(_message.Message):
    __slots__ = ("subject_type", "optional_subject_id", "optional_relation")
    SUBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_RELATION_FIELD_NUMBER: _ClassVar[int]
    subject_type: str
    optional_subject_id: str
    optional_relation: str
    def __init__(self, subject_type: _Optional[str] = ..., optional_subject_id: _Optional[str] = ..., optional_relation: _Optional[str] = ...) -> None: ...

class RelationshipFilter(_message.Message):
    __slots__ = ("resource_type", "optional_resource_id", "optional_resource_id_prefix", "optional_relation", "optional_subject_filter")
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_RESOURCE_ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_RELATION_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_SUBJECT_FILTER_FIELD_NUMBER: _ClassVar[int]
    resource_type: str
    optional_resource_id: str
    optional_resource_id_prefix: str
    optional_relation: str
    optional_subject_filter: SubjectFilter
    def __init__(self, resource_type: _Optional[str] = ..., optional_resource_id: _Optional[str] = ..., optional_resource_id_prefix: _Optional[str] = ..., optional_relation: _Optional[str] = ..., optional_subject_filter: _Optional[_Union[SubjectFilter, _Mapping]] = ...) -> None: ...

class Precondition(_message.Message):
    __slots__ = ("operation", "filter")
    class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OPERATION_UNSPECIFIED: _ClassVar[Precondition.Operation]
        OPERATION_MUST_NOT_MATCH: _ClassVar[Precondition.Operation]
        OPERATION_MUST_MATCH: _ClassVar[Precondition.Operation]
    OPERATION_UNSPECIFIED: Precondition.Operation
    OPERATION_MUST_NOT_MATCH: Precondition.Operation
    OPERATION_MUST_MATCH: Precondition.Operation
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    operation: Precondition.Operation
    filter: RelationshipFilter
    def __init__(self, operation: _Optional[_Union[Precondition.Operation, str]] = ..., filter: _Optional[_Union[RelationshipFilter, _Mapping]] = ...) -> None: ...

class PartialCaveatInfo(_message.Message):
    __slots__ = ("missing_required_context",)
    MISSING_REQUIRED_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    missing_required_context: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, missing_required_context: _Optional[_Iterable[str]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...
