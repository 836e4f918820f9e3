from google.protobuf import struct_pb2 as _struct_pb2
from stonetown.api.gen.stonetown.v1 import core_pb2 as _core_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Permissionship(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PERMISSIONSHIP_UNSPECIFIED: _ClassVar[Permissionship]
    PERMISSIONSHIP_NO_PERMISSION: _ClassVar[Permissionship]
    PERMISSIONSHIP_HAS_PERMISSION: _ClassVar[Permissionship]
    PERMISSIONSHIP_CONDITIONAL_PERMISSION: _ClassVar[Permissionship]
PERMISSIONSHIP_UNSPECIFIED: Permissionship
PERMISSIONSHIP_NO_PERMISSION: Permissionship
PERMISSIONSHIP_HAS_PERMISSION: Permissionship
PERMISSIONSHIP_CONDITIONAL_PERMISSION: Permissionship

class CheckRequest(_message.Message):
    __slots__ = ("consistency", "resource", "permission", "subject", "context", "contextual_relationships", "with_tracing")
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONTEXTUAL_RELATIONSHIPS_FIELD_NUMBER: _ClassVar[int]
    WITH_TRACING_FIELD_NUMBER: _ClassVar[int]
    consistency: _core_pb2.Consistency
    resource: _core_pb2.ObjectReference
    permission: str
    subject: _core_pb2.SubjectReference
    context: _struct_pb2.Struct
    contextual_relationships: _containers.RepeatedCompositeFieldContainer[_core_pb2.Relationship]
    with_tracing: bool
    def __init__(self, consistency: _Optional[_Union[_core_pb2.Consistency, _Mapping]] = ..., resource: _Optional[_Union[_core_pb2.ObjectReference, _Mapping]] = ..., permission: _Optional[str] = ..., subject: _Optional[_Union[_core_pb2.SubjectReference, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., contextual_relationships: _Optional[_Iterable[_Union[_core_pb2.Relationship, _Mapping]]] = ..., with_tracing: _Optional[bool] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("checked_at", "permissionship", "partial_caveat_info", "debug_trace")
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONSHIP_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_CAVEAT_INFO_FIELD_NUMBER: _ClassVar[int]
    DEBUG_TRACE_FIELD_NUMBER: _ClassVar[int]
    checked_at: _core_pb2.ZedToken
    permissionship: Permissionship
    partial_caveat_info: _core_pb2.PartialCaveatInfo
    debug_trace: CheckTrace
    def __init__(self, checked_at: _Optional[_Union[_core_pb2.ZedToken, _Mapping]] = ..., permissionship: _Optional[_Union[Permissionship, str]] = ..., partial_caveat_info: _Optional[_Union[_core_pb2.PartialCaveatInfo, _Mapping]] = ..., debug_trace: _Optional[_Union[CheckTrace, _Mapping]] = ...) -> None: ...

class CheckTrace(_message.Message):
    __slots__ = ("kind", "label", "result", "reason", "line", "column", "missing_required_context", "children")
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    MISSING_REQUIRED_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    kind: str
    label: str
    result: Permissionship
    reason: str
    line: int
    column: int
    missing_required_context: _containers.RepeatedScalarFieldContainer[str]
    children: _containers.RepeatedCompositeFieldContainer[CheckTrace]
    def __init__(self, kind: _Optional[str] = ..., label: _Optional[str] = ..., result: _Optional[_Union[Permissionship, str]] = ..., reason: _Optional[str] = ..., line: _Optional[int] = ..., column: _Optional[int] = ..., missing_required_context: _Optional[_Iterable[str]] = ..., children: _Optional[_Iterable[_Union[CheckTrace, _Mapping]]] = ...) -> None: ...

class CheckBulkRequestItem(_message.Message):
    __slots__ = ("resource", "permission", "subject", "context")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    resource: _core_pb2.ObjectReference
    permission: str
    subject: _core_pb2.SubjectReference
    context: _struct_pb2.Struct
    def __init__(self, resource: _Optional[_Union[_core_pb2.ObjectReference, _Mapping]] = ..., permission: _Optional[str] = ..., subject: _Optional[_Union[_core_pb2.SubjectReference, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CheckBulkRequest(_message.Message):
    __slots__ = ("consistency", "items", "contextual_relationships")
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CONTEXTUAL_RELATIONSHIPS_FIELD_NUMBER: _ClassVar[int]
    consistency: _core_pb2.Consistency
    items: _containers.RepeatedCompositeFieldContainer[CheckBulkRequestItem]
    contextual_relationships: _containers.RepeatedCompositeFieldContainer[_core_pb2.Relationship]
    def __init__(self, consistency: _Optional[_Union[_core_pb2.Consistency, _Mapping]] = ..., items: _Optional[_Iterable[_Union[CheckBulkRequestItem, _Mapping]]] = ..., contextual_relationships: _Optional[_Iterable[_Union[_core_pb2.Relationship, _Mapping]]] = ...) -> None: ...

class CheckBulkResponseItem(_message.Message):
    __slots__ = ("permissionship", "partial_caveat_info")
    PERMISSIONSHIP_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_CAVEAT_INFO_FIELD_NUMBER: _ClassVar[int]
    permissionship: Permissionship
    partial_caveat_info: _core_pb2.PartialCaveatInfo
    def __init__(self, permissionship: _Optional[_Union[Permissionship, str]] = ..., partial_caveat_info: _Optional[_Union[_core_pb2.PartialCaveatInfo, _Mapping]] = ...) -> None: ...

class CheckBulkPair(_message.Message):
    __slots__ = ("request", "item", "error")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request: CheckBulkRequestItem
    item: CheckBulkResponseItem
    error: _core_pb2.ItemError
    def __init__(self, request: _Optional[_Union[CheckBulkRequestItem, _Mapping]] = ..., item: _Optional[_Union[CheckBulkResponseItem, _Mapping]] = ..., error: _Optional[_Union[_core_pb2.ItemError, _Mapping]] = ...) -> None: ...

class CheckBulkResponse(_message.Message):
    __slots__ = ("checked_at", "pairs")
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    checked_at: _core_pb2.ZedToken
    pairs: _containers.RepeatedCompositeFieldContainer[CheckBulkPair]
    def __init__(self, checked_at: _Optional[_Union[_core_pb2.ZedToken, _Mapping]] = ..., pairs: _Optional[_Iterable[_Union[CheckBulkPair, _Mapping]]] = ...) -> None: ...

class ExpandRequest(_message.Message):
    __slots__ = ("consistency", "resource", "permission", "recursive")
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    consistency: _core_pb2.Consistency
    resource: _core_pb2.ObjectReference
    permission: str
    recursive: bool
    def __init__(self, consistency: _Optional[_Union[_core_pb2.Consistency, _Mapping]] = ..., resource: _Optional[_Union[_core_pb2.ObjectReference, _Mapping]] = ..., permission: _Optional[str] = ..., recursive: _Optional[bool] = ...) -> None: ...

class ExpandResponse(_message.Message):
    __slots__ = ("expanded_at", "tree_root")
    EXPANDED_AT_FIELD_NUMBER: _ClassVar[int]
    TREE_ROOT_FIELD_NUMBER: _ClassVar[int]
    expanded_at: _core_pb2.ZedToken
    tree_root: PermissionRelationshipTree
    def __init__(self, expanded_at: _Optional[_Union[_core_pb2.ZedToken, _Mapping]] = ..., tree_root: _Optional[_Union[PermissionRelationshipTree, _Mapping]] = ...) -> None: ...

class PermissionRelationshipTree(_message.Message):
    __slots__ = ("expanded_object", "expanded_relation", "intermediate", "leaf")
    EXPANDED_OBJECT_FIELD_NUMBER: _ClassVar[int]
    EXPANDED_RELATION_FIELD_NUMBER: _ClassVar[int]
    INTERMEDIATE_FIELD_NUMBER: _ClassVar[int]
    LEAF_FIELD_NUMBER: _ClassVar[int]
    expanded_object: _core_pb2.ObjectReference
    expanded_relation: str
    intermediate: AlgebraicSubjectSet
    leaf: DirectSubjectSet
    def __init__(self, expanded_object: _Optional[_Union[_core_pb2.ObjectReference, _Mapping]] = ..., expanded_relation: _Optional[str] = ..., intermediate: _Optional[_Union[AlgebraicSubjectSet, _Mapping]] = ..., leaf: _Optional[_Union[DirectSubjectSet, _Mapping]] = ...) -> None: ...

class AlgebraicSubjectSet(_message.Message):
    __slots__ = ("operation", "children")
    class Operation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OPERATION_UNSPECIFIED: _ClassVar[AlgebraicSubjectSet.Operation]
        OPERATION_UNION: _ClassVar[AlgebraicSubjectSet.Operation]
        OPERATION_INTERSECTION: _ClassVar[AlgebraicSubjectSet.Operation]
        OPERATION_EXCLUSION: _ClassVar[AlgebraicSubjectSet.Operation]
    OPERATION_UNSPECIFIED: AlgebraicSubjectSet.Operation
    OPERATION_UNION: AlgebraicSubjectSet.Operation
    OPERATION_INTERSECTION: AlgebraicSubjectSet.Operation
    OPERATION_EXCLUSION: AlgebraicSubjectSet.Operation
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    operation: AlgebraicSubjectSet.Operation
    children: _containers.RepeatedCompositeFieldContainer[PermissionRelationshipTree]
    def __init__(self, operation: _Optional[_Union[AlgebraicSubjectSet.Operation, str]] = ..., children: _Optional[_Iterable[_Union[PermissionRelationshipTree, _Mapping]]] = ...) -> None: ...

class ExpandedSubject(_message.Message):
    __slots__ = ("subject", "caveat_name")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CAVEAT_NAME_FIELD_NUMBER: _ClassVar[int]
    subject: _core_pb2.SubjectReference
    caveat_name: str
    def __init__(self, subject: _Optional[_Union[_core_pb2.SubjectReference, _Mapping]] = ..., caveat_name: _Optional[str] = ...) -> None: ...

class DirectSubjectSet(_message.Message):
    __slots__ = ("subjects",)
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    subjects: _containers.RepeatedCompositeFieldContainer[ExpandedSubject]
    def __init__(self, subjects: _Optional[_Iterable[_Union[ExpandedSubject, _Mapping]]] = ...) -> None: ...

class LookupResourcesRequest(_message.Message):
    __slots__ = ("consistency", "resource_object_type", "permission", "subject", "context", "contextual_relationships", "optional_limit", "optional_cursor", "optional_results_per_message")
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONTEXTUAL_RELATIONSHIPS_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_CURSOR_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_RESULTS_PER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    consistency: _core_pb2.Consistency
    resource_object_type: str
    permission: str
    subject: _core_pb2.SubjectReference
    context: _struct_pb2.Struct
    contextual_relationships: _containers.RepeatedCompositeFieldContainer[_core_pb2.Relationship]
    optional_limit: int
    optional_cursor: _core_pb2.Cursor
    optional_results_per_message: int
    def __init__(self, consistency: _Optional[_Union[_core_pb2.Consistency, _Mapping]] = ..., resource_object_type: _Optional[str] = ..., permission: _Optional[str] = ..., subject: _Optional[_Union[_core_pb2.SubjectReference, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., contextual_relationships: _Optional[_Iterable[_Union[_core_pb2.Relationship, _Mapping]]] = ..., optional_limit: _Optional[int] = ..., optional_cursor: _Optional[_Union[_core_pb2.Cursor, _Mapping]] = ..., optional_results_per_message: _Optional[int] = ...) -> None: ...

class LookupResourcesResponse(_message.Message):
    __slots__ = ("looked_up_at", "resource_object_id", "permissionship", "partial_caveat_info", "after_result_cursor", "additional_results")
    LOOKED_UP_AT_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONSHIP_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_CAVEAT_INFO_FIELD_NUMBER: _ClassVar[int]
    AFTER_RESULT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    looked_up_at: _core_pb2.ZedToken
    resource_object_id: str
    permissionship: Permissionship
    partial_caveat_info: _core_pb2.PartialCaveatInfo
    after_result_cursor: _core_pb2.Cursor
    additional_results: _containers.RepeatedCompositeFieldContainer[LookupResourcesResult]
    def __init__(self, looked_up_at: _Optional[_Union[_core_pb2.ZedToken, _Mapping]] = ..., resource_object_id: _Optional[str] = ..., permissionship: _Optional[_Union[Permissionship, str]] = ..., partial_caveat_info: _Optional[_Union[_core_pb2.PartialCaveatInfo, _Mapping]] = ..., after_result_cursor: _Optional[_Union[_core_pb2.Cursor, _Mapping]] = ..., additional_results: _Optional[_Iterable[_Union[LookupResourcesResult, _Mapping]]] = ...) -> None: ...

class LookupResourcesResult(_message.Message):
    __slots__ = ("resource_object_id", "permissionship", "partial_caveat_info", "after_result_cursor")
    RESOURCE_OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONSHIP_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_CAVEAT_INFO_FIELD_NUMBER: _ClassVar[int]
    AFTER_RESULT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    resource_object_id: str
    permissionship: Permissionship
    partial_caveat_info: _core_pb2.PartialCaveatInfo
    after_result_cursor: _core_pb2.Cursor
    def __init__(self, resource_object_id: _Optional[str] = ..., permissionship: _Optional[_Union[Permissionship, str]] = ..., partial_caveat_info: _Optional[_Union[_core_pb2.PartialCaveatInfo, _Mapping]] = ..., after_result_cursor: _Optional[_Union[_core_pb2.Cursor, _Mapping]] = ...) -> None: ...

class LookupSubjectsRequest(_message.Message):
    __slots__ = ("consistency", "resource", "permission", "subject_object_type", "optional_subject_relation", "context", "contextual_relationships", "optional_limit", "optional_cursor", "optional_results_per_message")
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_SUBJECT_RELATION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONTEXTUAL_RELATIONSHIPS_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_CURSOR_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_RESULTS_PER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    consistency: _core_pb2.Consistency
    resource: _core_pb2.ObjectReference
    permission: str
    subject_object_type: str
    optional_subject_relation: str
    context: _struct_pb2.Struct
    contextual_relationships: _containers.RepeatedCompositeFieldContainer[_core_pb2.Relationship]
    optional_limit: int
    optional_cursor: _core_pb2.Cursor
    optional_results_per_message: int
    def __init__(self, consistency: _Optional[_Union[_core_pb2.Consistency, _Mapping]] = ..., resource: _Optional[_Union[_core_pb2.ObjectReference, _Mapping]] = ..., permission: _Optional[str] = ..., subject_object_type: _Optional[str] = ..., optional_subject_relation: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., contextual_relationships: _Optional[_Iterable[_Union[_core_pb2.Relationship, _Mapping]]] = ..., optional_limit: _Optional[int] = ..., optional_cursor: _Optional[_Union[_core_pb2.Cursor, _Mapping]] = ..., optional_results_per_message: _Optional[int] = ...) -> None: ...

class LookupSubjectsResponse(_message.Message):
    __slots__ = ("looked_up_at", "subject", "permissionship", "partial_caveat_info", "excluded_subject_ids", "after_result_cursor", "additional_results")
    LOOKED_UP_AT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONSHIP_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_CAVEAT_INFO_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_SUBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    AFTER_RESULT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    looked_up_at: _core_pb2.ZedToken
    subject: _core_pb2.SubjectReference
    permissionship: Permissionship
    partial_caveat_info: _core_pb2.PartialCaveatInfo
    excluded_subject_ids: _containers.RepeatedScalarFieldContainer[str]
    after_result_cursor: _core_pb2.Cursor
    additional_results: _containers.RepeatedCompositeFieldContainer[LookupSubjectsResult]
    def __init__(self, looked_up_at: _Optional[_Union[_core_pb2.ZedToken, _Mapping]] = ..., subject: _Optional[_Union[_core_pb2.SubjectReference, _Mapping]] = ..., permissionship: _Optional[_Union[Permissionship, str]] = ..., partial_caveat_info: _Optional[_Union[_core_pb2.PartialCaveatInfo, _Mapping]] = ..., excluded_subject_ids: _Optional[_Iterable[str]] = ..., after_result_cursor: _Optional[_Union[_core_pb2.Cursor, _Mapping]] = ..., additional_results: _Optional[_Iterable[_Union[LookupSubjectsResult, _Mapping]]] = ...) -> None: ...

class LookupSubjectsResult(_message.Message):
    __slots__ = ("subject", "permissionship", "partial_caveat_info", "excluded_subject_ids", "after_result_cursor")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONSHIP_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_CAVEAT_INFO_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_SUBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    AFTER_RESULT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    subject: _core_pb2.SubjectReference
    permissionship: Permissionship
    partial_caveat_info: _core_pb2.PartialCaveatInfo
    excluded_subject_ids: _containers.RepeatedScalarFieldContainer[str]
    after_result_cursor: _core_pb2.Cursor
    def __init__(self, subject: _Optional[_Union[_core_pb2.SubjectReference, _Mapping]] = ..., permissionship: _Optional[_Union[Permissionship, str]] = ..., partial_caveat_info: _Optional[_Union[_core_pb2.PartialCaveatInfo, _Mapping]] = ..., excluded_subject_ids: _Optional[_Iterable[str]] = ..., after_result_cursor: _Optional[_Union[_core_pb2.Cursor, _Mapping]] = ...) -> None: ...
