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
