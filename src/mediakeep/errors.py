"""Typed errors with stable codes. The HTTP layer maps them to RFC 9457 problems."""

from __future__ import annotations

from typing import Any


class MediaKeepError(Exception):
    """Base error. ``code`` is stable and safe to branch on; ``status`` is the HTTP status."""

    code = "internal_error"
    status = 500
    retryable = False

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class InvalidInput(MediaKeepError):
    code = "invalid_input"
    status = 400


class InvalidName(InvalidInput):
    code = "invalid_name"


class InvalidUrl(InvalidInput):
    code = "invalid_url"


class BlockedDestination(MediaKeepError):
    """The URL points (or redirects, or resolves) somewhere we refuse to fetch."""

    code = "blocked_destination"
    status = 400


class TooManyRedirects(MediaKeepError):
    code = "too_many_redirects"
    status = 400


class DownloadFailed(MediaKeepError):
    code = "download_failed"
    status = 502

    def __init__(self, message: str, *, retryable: bool = False, **detail: Any) -> None:
        super().__init__(message, **detail)
        self.retryable = retryable


class UpstreamStatus(DownloadFailed):
    """The provider answered with an HTTP error status."""

    code = "upstream_status"


class DownloadTimeout(DownloadFailed):
    code = "download_timeout"
    status = 504


class FileTooLarge(MediaKeepError):
    code = "file_too_large"
    status = 413


class SizeMismatch(MediaKeepError):
    """The body did not match the length the server announced (or the store recorded)."""

    code = "size_mismatch"
    status = 502


class UnsupportedMediaType(MediaKeepError):
    code = "unsupported_media_type"
    status = 415


class EmptyFile(UnsupportedMediaType):
    code = "empty_file"


class NotFound(MediaKeepError):
    code = "not_found"
    status = 404


class StoreError(MediaKeepError):
    code = "store_error"
    status = 503
    retryable = True


class DatabaseUnavailable(MediaKeepError):
    """The database did not answer in time (connection pool exhausted, server restarting):
    nothing was changed, and the same request may be sent again."""

    code = "database_unavailable"
    status = 503
    retryable = True


def database_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The typed error for a database failure that says "try again", else None."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.TimeoutError):
        return DatabaseUnavailable("the database is busy: no connection was free in time")
    gone = sa_exc.OperationalError | sa_exc.InterfaceError
    if isinstance(exc, sa_exc.DBAPIError) and (exc.connection_invalidated or isinstance(exc, gone)):
        return DatabaseUnavailable("the database is unavailable")
    if isinstance(exc, ConnectionError):
        return DatabaseUnavailable("the database is unavailable")
    return None


class IntegrityError(StoreError):
    """The object in the store does not match what we wrote."""

    code = "integrity_error"
    retryable = False


class InvalidSignature(MediaKeepError):
    code = "invalid_signature"
    status = 403


class ExpiredSignature(InvalidSignature):
    code = "expired_signature"


class ObjectExists(StoreError):
    """The key is already taken; stores never overwrite unless asked to."""

    code = "object_exists"
    status = 409
    retryable = False


class BucketNotFound(StoreError):
    """The bucket is missing: a configuration problem, not a missing object."""

    code = "bucket_not_found"
    retryable = False


class StoreAuthError(StoreError):
    """The store refused our credentials (bad or expired key, or no permission)."""

    code = "store_auth_failed"
    retryable = False


class UnsupportedOperation(StoreError):
    """This store cannot do that the way it was asked (e.g. sign without a network call)."""

    code = "unsupported_operation"
    retryable = False


class ObjectTooLarge(FileTooLarge):
    """The store's own limit (e.g. a bucket's file size limit) refused the object."""

    code = "object_too_large"


class StoreRejectedType(UnsupportedMediaType):
    """The store's own rules (e.g. a bucket's allowed MIME types) refused the type."""

    code = "store_rejected_type"


# -- the HTTP service ----------------------------------------------------------------------


class Unauthorized(MediaKeepError):
    """No usable credentials. Always answered with 401 and a ``WWW-Authenticate`` header."""

    code = "unauthorized"
    status = 401


class InvalidToken(Unauthorized):
    """The bearer token is malformed, wrongly signed, uses another algorithm, or lacks
    the claims we need."""

    code = "invalid_token"


class TokenExpired(InvalidToken):
    code = "token_expired"


class InvalidApiKey(Unauthorized):
    code = "invalid_api_key"


class OwnerNotAllowed(MediaKeepError):
    """The caller asked to act for another owner without the service role."""

    code = "owner_not_allowed"
    status = 403


class OwnerRequired(InvalidInput):
    """A service-role caller must say which owner it acts for."""

    code = "owner_required"


class RequestTooLarge(MediaKeepError):
    code = "request_too_large"
    status = 413


class RateLimited(MediaKeepError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int, **detail: Any) -> None:
        super().__init__(message, retry_after=retry_after, **detail)
        self.retry_after = retry_after


class UploadNotPending(MediaKeepError):
    """The presigned upload was already completed (a replay) or rejected."""

    code = "upload_not_pending"
    status = 409


class UploadNotReceived(MediaKeepError):
    """``complete`` was called but nothing arrived at the upload URL (yet)."""

    code = "upload_not_received"
    status = 409


class UploadExpired(MediaKeepError):
    code = "upload_expired"
    status = 410


class UploadSizeMismatch(SizeMismatch):
    """What arrived is not the size that was presigned: the client's fault, not upstream's."""

    code = "upload_size_mismatch"
    status = 422


class UploadChecksumMismatch(MediaKeepError):
    code = "upload_checksum_mismatch"
    status = 422


# -- jobs, generations, webhooks -------------------------------------------------------


class IdempotencyConflict(MediaKeepError):
    """The Idempotency-Key was used (within its lifetime) for a different request."""

    code = "idempotency_key_reused"
    status = 409


class GenerationNotFailed(MediaKeepError):
    """Only the files of a generation that did not complete may be cleaned up."""

    code = "generation_not_failed"
    status = 409


class WebhookRejected(MediaKeepError):
    """A webhook that cannot be trusted; nothing of it was written."""

    code = "webhook_rejected"
    status = 401


class WebhookUnsigned(WebhookRejected):
    code = "webhook_unsigned"


class WebhookSignatureInvalid(WebhookRejected):
    code = "webhook_signature_invalid"


class WebhookStale(WebhookRejected):
    """The webhook's timestamp is too far from now (a replay, or a wrong clock)."""

    code = "webhook_stale"


class TicketInvalid(WebhookRejected):
    """The webhook URL's ticket is missing, malformed, or not signed by this service."""

    code = "ticket_invalid"


class TicketExpired(TicketInvalid):
    code = "ticket_expired"


class TicketOwnerMismatch(MediaKeepError):
    """The provider request already belongs to another owner than the ticket's."""

    code = "ticket_owner_mismatch"
    status = 403


class JwksUnavailable(MediaKeepError):
    """The provider's signing keys could not be fetched; the sender should retry."""

    code = "jwks_unavailable"
    status = 503
    retryable = True
