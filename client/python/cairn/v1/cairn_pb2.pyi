from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecallMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECALL_MODE_DEFAULT: _ClassVar[RecallMode]
    RECALL_MODE_SEMANTIC: _ClassVar[RecallMode]
    RECALL_MODE_LEXICAL: _ClassVar[RecallMode]
    RECALL_MODE_HYBRID: _ClassVar[RecallMode]
RECALL_MODE_DEFAULT: RecallMode
RECALL_MODE_SEMANTIC: RecallMode
RECALL_MODE_LEXICAL: RecallMode
RECALL_MODE_HYBRID: RecallMode

class MigrateRequest(_message.Message):
    __slots__ = ("namespace", "model")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    model: str
    def __init__(self, namespace: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class MigrateProgress(_message.Message):
    __slots__ = ("done", "total", "resumed", "result")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    resumed: int
    result: MigrateResult
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ..., resumed: _Optional[int] = ..., result: _Optional[_Union[MigrateResult, _Mapping]] = ...) -> None: ...

class MigrateResult(_message.Message):
    __slots__ = ("changed", "model", "memories", "caught_up", "root")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    model: str
    memories: int
    caught_up: int
    root: Root
    def __init__(self, changed: _Optional[bool] = ..., model: _Optional[str] = ..., memories: _Optional[int] = ..., caught_up: _Optional[int] = ..., root: _Optional[_Union[Root, _Mapping]] = ...) -> None: ...

class ExternalModel(_message.Message):
    __slots__ = ("name", "dim")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ...) -> None: ...

class CreateNamespaceRequest(_message.Message):
    __slots__ = ("namespace", "external_model", "model")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    external_model: ExternalModel
    model: str
    def __init__(self, namespace: _Optional[str] = ..., external_model: _Optional[_Union[ExternalModel, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class CreateNamespaceResponse(_message.Message):
    __slots__ = ("created", "model", "root")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    created: bool
    model: str
    root: Root
    def __init__(self, created: _Optional[bool] = ..., model: _Optional[str] = ..., root: _Optional[_Union[Root, _Mapping]] = ...) -> None: ...

class ShareRequest(_message.Message):
    __slots__ = ("prefix", "node_id")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    node_id: str
    def __init__(self, prefix: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class ShareResponse(_message.Message):
    __slots__ = ("changed",)
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    def __init__(self, changed: _Optional[bool] = ...) -> None: ...

class ListSharesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShareGrant(_message.Message):
    __slots__ = ("prefix", "node_id")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    node_id: str
    def __init__(self, prefix: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class ListSharesResponse(_message.Message):
    __slots__ = ("grants",)
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[ShareGrant]
    def __init__(self, grants: _Optional[_Iterable[_Union[ShareGrant, _Mapping]]] = ...) -> None: ...

class RemovePeerRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class RemovePeerResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class UnfollowRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class UnfollowResponse(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: int
    def __init__(self, dropped: _Optional[int] = ...) -> None: ...

class MintTokenRequest(_message.Message):
    __slots__ = ("prefixes", "rights", "ttl_secs")
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    RIGHTS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECS_FIELD_NUMBER: _ClassVar[int]
    prefixes: _containers.RepeatedScalarFieldContainer[str]
    rights: _containers.RepeatedScalarFieldContainer[str]
    ttl_secs: int
    def __init__(self, prefixes: _Optional[_Iterable[str]] = ..., rights: _Optional[_Iterable[str]] = ..., ttl_secs: _Optional[int] = ...) -> None: ...

class MintTokenResponse(_message.Message):
    __slots__ = ("token", "revocation_ids", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    revocation_ids: _containers.RepeatedScalarFieldContainer[str]
    expires_at: int
    def __init__(self, token: _Optional[str] = ..., revocation_ids: _Optional[_Iterable[str]] = ..., expires_at: _Optional[int] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MemoryInput(_message.Message):
    __slots__ = ("text", "metadata", "created_at", "key", "vector")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    text: str
    metadata: _containers.ScalarMap[str, str]
    created_at: int
    key: str
    vector: Vector
    def __init__(self, text: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[int] = ..., key: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class RememberRequest(_message.Message):
    __slots__ = ("namespace", "items")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    items: _containers.RepeatedCompositeFieldContainer[MemoryInput]
    def __init__(self, namespace: _Optional[str] = ..., items: _Optional[_Iterable[_Union[MemoryInput, _Mapping]]] = ...) -> None: ...

class RememberResult(_message.Message):
    __slots__ = ("id", "deduplicated", "created_at", "replaced")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEDUPLICATED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    id: str
    deduplicated: bool
    created_at: int
    replaced: str
    def __init__(self, id: _Optional[str] = ..., deduplicated: _Optional[bool] = ..., created_at: _Optional[int] = ..., replaced: _Optional[str] = ...) -> None: ...

class RememberResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RememberResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RememberResult, _Mapping]]] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("metadata", "since", "until")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.ScalarMap[str, str]
    since: int
    until: int
    def __init__(self, metadata: _Optional[_Mapping[str, str]] = ..., since: _Optional[int] = ..., until: _Optional[int] = ...) -> None: ...

class RecallRequest(_message.Message):
    __slots__ = ("namespace", "text", "vector", "k", "filter", "ef", "exact", "proof", "prefix", "mode", "depth", "text_vector")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EF_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    TEXT_VECTOR_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    text: str
    vector: Vector
    k: int
    filter: Filter
    ef: int
    exact: bool
    proof: bool
    prefix: bool
    mode: RecallMode
    depth: int
    text_vector: Vector
    def __init__(self, namespace: _Optional[str] = ..., text: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., ef: _Optional[int] = ..., exact: _Optional[bool] = ..., proof: _Optional[bool] = ..., prefix: _Optional[bool] = ..., mode: _Optional[_Union[RecallMode, str]] = ..., depth: _Optional[int] = ..., text_vector: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "text", "metadata", "created_at", "score", "record", "namespace", "key")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    metadata: _containers.ScalarMap[str, str]
    created_at: int
    score: float
    record: bytes
    namespace: str
    key: str
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[int] = ..., score: _Optional[float] = ..., record: _Optional[bytes] = ..., namespace: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class RecallResponse(_message.Message):
    __slots__ = ("hits", "proof", "cosignatures", "mode")
    HITS_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    proof: bytes
    cosignatures: _containers.RepeatedCompositeFieldContainer[Cosignature]
    mode: RecallMode
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., proof: _Optional[bytes] = ..., cosignatures: _Optional[_Iterable[_Union[Cosignature, _Mapping]]] = ..., mode: _Optional[_Union[RecallMode, str]] = ...) -> None: ...

class Cosignature(_message.Message):
    __slots__ = ("witness", "signature")
    WITNESS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    witness: str
    signature: bytes
    def __init__(self, witness: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Memory(_message.Message):
    __slots__ = ("id", "namespace", "text", "metadata", "created_at", "record", "key")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    namespace: str
    text: str
    metadata: _containers.ScalarMap[str, str]
    created_at: int
    record: bytes
    key: str
    def __init__(self, id: _Optional[str] = ..., namespace: _Optional[str] = ..., text: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[int] = ..., record: _Optional[bytes] = ..., key: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("namespace", "ids", "proof", "keys")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    proof: bool
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., proof: _Optional[bool] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("memories", "missing", "proof", "cosignatures", "unreturned")
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    UNRETURNED_FIELD_NUMBER: _ClassVar[int]
    memories: _containers.RepeatedCompositeFieldContainer[Memory]
    missing: _containers.RepeatedScalarFieldContainer[str]
    proof: bytes
    cosignatures: _containers.RepeatedCompositeFieldContainer[Cosignature]
    unreturned: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, memories: _Optional[_Iterable[_Union[Memory, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ..., proof: _Optional[bytes] = ..., cosignatures: _Optional[_Iterable[_Union[Cosignature, _Mapping]]] = ..., unreturned: _Optional[_Iterable[str]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("namespace", "since", "until", "limit", "page_token", "proof", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    since: int
    until: int
    limit: int
    page_token: str
    proof: bool
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, namespace: _Optional[str] = ..., since: _Optional[int] = ..., until: _Optional[int] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., proof: _Optional[bool] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("memories", "next_page_token", "proof", "cosignatures")
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    memories: _containers.RepeatedCompositeFieldContainer[Memory]
    next_page_token: str
    proof: bytes
    cosignatures: _containers.RepeatedCompositeFieldContainer[Cosignature]
    def __init__(self, memories: _Optional[_Iterable[_Union[Memory, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., proof: _Optional[bytes] = ..., cosignatures: _Optional[_Iterable[_Union[Cosignature, _Mapping]]] = ...) -> None: ...

class ForgetRequest(_message.Message):
    __slots__ = ("namespace", "ids")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ForgetResponse(_message.Message):
    __slots__ = ("forgotten", "missing")
    FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    forgotten: _containers.RepeatedScalarFieldContainer[str]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, forgotten: _Optional[_Iterable[str]] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("model", "dim", "vectors")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    model: str
    dim: int
    vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    def __init__(self, model: _Optional[str] = ..., dim: _Optional[int] = ..., vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class NamespaceStats(_message.Message):
    __slots__ = ("namespace", "memories", "tombstones", "index_points", "newest_created_at", "model")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    INDEX_POINTS_FIELD_NUMBER: _ClassVar[int]
    NEWEST_CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    memories: int
    tombstones: int
    index_points: int
    newest_created_at: int
    model: str
    def __init__(self, namespace: _Optional[str] = ..., memories: _Optional[int] = ..., tombstones: _Optional[int] = ..., index_points: _Optional[int] = ..., newest_created_at: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("namespaces", "total_memories", "model", "dim", "version")
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MEMORIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[NamespaceStats]
    total_memories: int
    model: str
    dim: int
    version: str
    def __init__(self, namespaces: _Optional[_Iterable[_Union[NamespaceStats, _Mapping]]] = ..., total_memories: _Optional[int] = ..., model: _Optional[str] = ..., dim: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...

class ListNamespacesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NamespaceInfo(_message.Message):
    __slots__ = ("namespace", "memories", "owner", "seq", "model")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    MEMORIES_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    memories: int
    owner: str
    seq: int
    model: str
    def __init__(self, namespace: _Optional[str] = ..., memories: _Optional[int] = ..., owner: _Optional[str] = ..., seq: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class ListNamespacesResponse(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[NamespaceInfo]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[NamespaceInfo, _Mapping]]] = ...) -> None: ...

class GetRootRequest(_message.Message):
    __slots__ = ("namespace", "seq")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    seq: int
    def __init__(self, namespace: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class WatchRootsRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class Root(_message.Message):
    __slots__ = ("namespace", "seq", "prev", "graph_leaves", "graph_root", "time_leaves", "time_root", "entry", "max_level", "m", "m0", "dim", "model", "created_at", "node_id", "signature", "hash", "signed", "cosignatures")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PREV_FIELD_NUMBER: _ClassVar[int]
    GRAPH_LEAVES_FIELD_NUMBER: _ClassVar[int]
    GRAPH_ROOT_FIELD_NUMBER: _ClassVar[int]
    TIME_LEAVES_FIELD_NUMBER: _ClassVar[int]
    TIME_ROOT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    MAX_LEVEL_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    M0_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    seq: int
    prev: str
    graph_leaves: int
    graph_root: str
    time_leaves: int
    time_root: str
    entry: int
    max_level: int
    m: int
    m0: int
    dim: int
    model: str
    created_at: int
    node_id: str
    signature: str
    hash: str
    signed: bytes
    cosignatures: _containers.RepeatedCompositeFieldContainer[Cosignature]
    def __init__(self, namespace: _Optional[str] = ..., seq: _Optional[int] = ..., prev: _Optional[str] = ..., graph_leaves: _Optional[int] = ..., graph_root: _Optional[str] = ..., time_leaves: _Optional[int] = ..., time_root: _Optional[str] = ..., entry: _Optional[int] = ..., max_level: _Optional[int] = ..., m: _Optional[int] = ..., m0: _Optional[int] = ..., dim: _Optional[int] = ..., model: _Optional[str] = ..., created_at: _Optional[int] = ..., node_id: _Optional[str] = ..., signature: _Optional[str] = ..., hash: _Optional[str] = ..., signed: _Optional[bytes] = ..., cosignatures: _Optional[_Iterable[_Union[Cosignature, _Mapping]]] = ...) -> None: ...

class NodeInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfoResponse(_message.Message):
    __slots__ = ("node_id", "model", "version", "ticket")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    model: str
    version: str
    ticket: str
    def __init__(self, node_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., ticket: _Optional[str] = ...) -> None: ...

class AddPeerRequest(_message.Message):
    __slots__ = ("ticket",)
    TICKET_FIELD_NUMBER: _ClassVar[int]
    ticket: str
    def __init__(self, ticket: _Optional[str] = ...) -> None: ...

class AddPeerResponse(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class ListPeersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Peer(_message.Message):
    __slots__ = ("node_id", "addrs")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    addrs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., addrs: _Optional[_Iterable[str]] = ...) -> None: ...

class ListPeersResponse(_message.Message):
    __slots__ = ("peers",)
    PEERS_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    def __init__(self, peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ...) -> None: ...

class FollowRequest(_message.Message):
    __slots__ = ("namespace", "owner", "external_model")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_MODEL_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    owner: str
    external_model: ExternalModel
    def __init__(self, namespace: _Optional[str] = ..., owner: _Optional[str] = ..., external_model: _Optional[_Union[ExternalModel, _Mapping]] = ...) -> None: ...

class FollowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("data", "part", "snapshot_hash", "seq", "parts")
    DATA_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_HASH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    part: int
    snapshot_hash: bytes
    seq: int
    parts: int
    def __init__(self, data: _Optional[bytes] = ..., part: _Optional[int] = ..., snapshot_hash: _Optional[bytes] = ..., seq: _Optional[int] = ..., parts: _Optional[int] = ...) -> None: ...

class AlertsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Alert(_message.Message):
    __slots__ = ("kind", "owner", "namespace", "seq", "roots")
    KIND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ROOTS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    owner: str
    namespace: str
    seq: int
    roots: _containers.RepeatedCompositeFieldContainer[Root]
    def __init__(self, kind: _Optional[str] = ..., owner: _Optional[str] = ..., namespace: _Optional[str] = ..., seq: _Optional[int] = ..., roots: _Optional[_Iterable[_Union[Root, _Mapping]]] = ...) -> None: ...

class AlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...
