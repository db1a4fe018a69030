"""What can go wrong with the vendor, as errors whose messages never hold a secret."""

from __future__ import annotations


class VendorAPIError(Exception):
    """The vendor could not be read. The message is safe to show: it never contains the key."""

    retryable = True


class VendorRequestRejected(VendorAPIError):
    """A 4xx other than 429 (wrong key, bad request), or a redirect that is not followed:
    retrying cannot help."""

    retryable = False


class VendorRateLimited(VendorAPIError):
    """The vendor asked to wait longer than the configured ceiling."""


class VendorResponseError(VendorAPIError):
    """A 200 response that breaks the contract (no `data` list, no `total`, bad JSON)."""


class UnreconciledWindowError(VendorAPIError):
    """A window the vendor kept changing, pass after pass, until it could not be split more."""


def vendor_error_behind(exc: BaseException) -> VendorAPIError | None:
    """The vendor error behind `exc` (dlt wraps what a source raises in its own exceptions)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, VendorAPIError):
        cause = cause.__cause__ or cause.__context__
    return cause
