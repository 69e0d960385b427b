"""The SDK's exceptions: one class per gRPC status code, all subclasses of `CairnError`.

A call that the node answers with an error status raises the class of that status (`NotFound`,
`InvalidArgument`, ...), carrying `.code` (a `grpc.StatusCode`) and `.details` (the node's message, which
names the field, the right or the namespace). Everything the SDK refuses by itself (a certificate that does
not match the pin, an answer whose proof does not check out, ...) is also a `CairnError`.
"""

from __future__ import annotations

import grpc


class CairnError(Exception):
    """Base class of every error the SDK raises.

    `code` is the gRPC status code when the node answered with one (else None); `details` is the message.
    """

    code: grpc.StatusCode | None = None

    def __init__(self, details: str = "", *, code: grpc.StatusCode | None = None):
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        if self.code is None:
            return self.details
        return f"{_CODE_NAMES.get(self.code, self.code.name.lower())}: {self.details}"


class RpcError(CairnError):
    """The node answered with an error status. Subclassed per status code below."""


class Cancelled(RpcError):
    """CANCELLED: the call was cancelled (the node also uses it for calls past its `--request-timeout`)."""

    code = grpc.StatusCode.CANCELLED


class Unknown(RpcError):
    """UNKNOWN."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(RpcError, ValueError):
    """INVALID_ARGUMENT: a field breaks a validation rule; `details` names the field (e.g. `items[3].text`)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(RpcError, TimeoutError):
    """DEADLINE_EXCEEDED: the client's `timeout` passed before the node answered."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(RpcError, LookupError):
    """NOT_FOUND: the namespace (or a root seq) does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RpcError):
    """ALREADY_EXISTS."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(RpcError, PermissionError):
    """PERMISSION_DENIED: the token is valid but lacks the right the call needs on its namespace."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(RpcError):
    """RESOURCE_EXHAUSTED: a size limit, the node's in-flight limit or its free-disk floor."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(RpcError):
    """FAILED_PRECONDITION: the node's state forbids the call (e.g. a write to a replica namespace)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(RpcError):
    """ABORTED."""

    code = grpc.StatusCode.ABORTED


class OutOfRange(RpcError):
    """OUT_OF_RANGE."""

    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(RpcError):
    """UNIMPLEMENTED: the node does not know this call (an older node)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(RpcError):
    """INTERNAL."""

    code = grpc.StatusCode.INTERNAL


class Unavailable(RpcError, ConnectionError):
    """UNAVAILABLE: the node cannot be reached, or is shutting down."""

    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(RpcError):
    """DATA_LOSS."""

    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(RpcError):
    """UNAUTHENTICATED: no token, or a malformed, foreign, expired or revoked one."""

    code = grpc.StatusCode.UNAUTHENTICATED


class ConfigError(CairnError, ValueError):
    """The client was set up wrongly (a bad URL, a malformed pin or node id, https without a pin, ...)."""


class TlsPinMismatch(CairnError):
    """The node's TLS certificate does not have the pinned SHA-256 fingerprint. Raised before any call."""

    def __init__(self, url: str, expected: str, got: str):
        super().__init__(
            f"TLS certificate of {url} has SHA-256 fingerprint {got}, but {expected} is pinned: refusing to connect"
        )
        self.url = url
        self.expected = expected
        self.got = got


class VerificationError(CairnError):
    """An answer asked for with `verify=True` was rejected: its proof does not verify against the trusted node
    id, what the node shows differs from the proven record bytes, or its root is older than (rollback) or
    conflicts with (equivocation) a root already accepted."""


_CODE_NAMES = {
    grpc.StatusCode.CANCELLED: "cancelled",
    grpc.StatusCode.UNKNOWN: "unknown error",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid argument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "deadline exceeded",
    grpc.StatusCode.NOT_FOUND: "not found",
    grpc.StatusCode.ALREADY_EXISTS: "already exists",
    grpc.StatusCode.PERMISSION_DENIED: "permission denied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "resource exhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "failed precondition",
    grpc.StatusCode.ABORTED: "aborted",
    grpc.StatusCode.OUT_OF_RANGE: "out of range",
    grpc.StatusCode.UNIMPLEMENTED: "unimplemented",
    grpc.StatusCode.INTERNAL: "internal error",
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.DATA_LOSS: "data loss",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
}

_BY_CODE: dict[grpc.StatusCode, type[RpcError]] = {
    cls.code: cls
    for cls in (
        Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists, PermissionDenied,
        ResourceExhausted, FailedPrecondition, Aborted, OutOfRange, Unimplemented, Internal, Unavailable,
        DataLoss, Unauthenticated,
    )
}


def error_class(code: grpc.StatusCode) -> type[RpcError]:
    """The exception class for a status code (`RpcError` for one without its own class)."""
    return _BY_CODE.get(code, RpcError)


def from_rpc_error(e: grpc.RpcError, deadline_passed: bool = False) -> CairnError:
    """Converts a grpc error (sync or asyncio) into the SDK's exception for its status code.

    `deadline_passed` says the call's own `timeout` had run out when the error came. The node enforces a caller's
    deadline too and answers CANCELLED "Timeout expired" when it notices first (as for its own
    `--request-timeout`); that answer to an expired caller's deadline is DeadlineExceeded, whichever side saw it
    first."""
    try:
        code = e.code()
        details = e.details() or ""
    except Exception:  # an RpcError that is not a call (should not happen)
        return RpcError(str(e), code=grpc.StatusCode.UNKNOWN)
    if deadline_passed and code == grpc.StatusCode.CANCELLED and "Timeout expired" in details:
        return DeadlineExceeded(details, code=grpc.StatusCode.DEADLINE_EXCEEDED)
    cls = error_class(code)
    return cls(details, code=code)
