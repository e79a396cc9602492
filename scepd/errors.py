"""The one error tree of scepd.

Every failure a user can cause or meet is a :class:`ScepError` subclass whose ``exit_code`` is
the documented process exit status (README, ``scepd --help``).  The message is one line that
says what failed, where (file, server, field) and, when we know it, what to do.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_REJECTED = 4
EXIT_UNREACHABLE = 5
EXIT_TRUST = 6
EXIT_FILE = 7
EXIT_ATTENTION = 8
EXIT_HOOK = 9

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_UNEXPECTED: "unexpected error (a bug: please report it with --debug output)",
    EXIT_USAGE: "usage or configuration error",
    EXIT_PENDING: "request pending at the CA (transactionID printed)",
    EXIT_REJECTED: "rejected by the CA (failInfo and its likely meaning printed)",
    EXIT_UNREACHABLE: "server unreachable, timed out or answered with an HTTP error",
    EXIT_TRUST: "trust or integrity failure (fingerprint, signature, nonce, transactionID, "
    "certificate not for our key, malformed message)",
    EXIT_FILE: "local file error (cannot read or write a key, certificate or directory)",
    EXIT_ATTENTION: "status / renew --all: an identity needs attention (certificate missing or "
    "expired, or its last attempt failed)",
    EXIT_HOOK: "a hook failed (a new certificate, if any, was kept)",
}


class ScepError(Exception):
    """Root of every error scepd raises on purpose."""

    exit_code = EXIT_UNEXPECTED


class UsageError(ScepError):
    """Bad command-line arguments or configuration values."""

    exit_code = EXIT_USAGE


class ChallengeEncodingError(UsageError):
    """The challenge password cannot be sent as PrintableString (NDES needs it)."""


class TransportError(ScepError):
    """The server could not be reached or answered with an HTTP error."""

    exit_code = EXIT_UNREACHABLE


class Unreachable(TransportError):
    """Connection refused, DNS failure, TLS failure or timeout."""


class HttpError(TransportError):
    """The server answered, but not with what a SCEP server sends (4xx/5xx, HTML page)."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds, from the server's Retry-After header


class NotSupportedByServer(TransportError):
    """The server does not offer the operation (not advertised, or answered 'not implemented')."""


class TrustError(ScepError):
    """Something from the network failed a trust or integrity check."""

    exit_code = EXIT_TRUST


class MalformedMessage(TrustError):
    """Bytes from the network are not the SCEP/CMS/X.509 structure they claim to be."""


class FingerprintMismatch(TrustError):
    """No CA certificate of the GetCACert response matches the pinned fingerprint."""


class SignatureInvalid(TrustError):
    """A CMS or certificate signature did not verify."""


class ResponseMismatch(TrustError):
    """A CertRep does not answer our request (messageType, transactionID, recipientNonce)."""


class CertificateMismatch(TrustError):
    """The issued certificate is not for our key (or otherwise not what we asked for)."""


class CARejected(ScepError):
    """The CA answered FAILURE."""

    exit_code = EXIT_REJECTED

    def __init__(self, message: str, *, fail_info: str | None = None) -> None:
        super().__init__(message)
        self.fail_info = fail_info


class LocalFileError(ScepError):
    """A local key, certificate or directory cannot be read or written."""

    exit_code = EXIT_FILE


class HookError(ScepError):
    """A hook failed: a pre_renew hook stops the renewal; a post_renew one is reported."""

    exit_code = EXIT_HOOK
