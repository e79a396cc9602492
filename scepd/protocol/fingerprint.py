"""CA fingerprint pins: ``sha256:HEX``, ``sha1:HEX`` or ``md5:HEX`` (NDES's admin page shows
MD5).  Colons, spaces and case are ignored."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from scepd.errors import UsageError

_SIZES = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}


@dataclass(frozen=True)
class Fingerprint:
    algorithm: str
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        alg, sep, hexpart = text.partition(":")
        alg = alg.strip().lower().replace("-", "")
        if not sep or alg not in _SIZES:
            raise UsageError(
                f"--fingerprint {text!r}: expected ALG:HEX with ALG one of sha256, sha1, md5"
            )
        cleaned = re.sub(r"[\s:]", "", hexpart)
        try:
            digest = bytes.fromhex(cleaned)
        except ValueError:
            raise UsageError(f"--fingerprint {text!r}: not hexadecimal") from None
        if len(digest) != _SIZES[alg]:
            raise UsageError(
                f"--fingerprint {text!r}: a {alg} fingerprint has {_SIZES[alg] * 2} hex digits, "
                f"got {len(cleaned)}"
            )
        return cls(alg, digest)

    def matches(self, cert: x509.Certificate) -> bool:
        return of(cert, self.algorithm) == self.digest

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.digest.hex().upper()}"


def of(cert: x509.Certificate, algorithm: str) -> bytes:
    """Fingerprint of the whole DER certificate."""
    return hashlib.new(algorithm, cert.public_bytes(Encoding.DER), usedforsecurity=False).digest()


def display(cert: x509.Certificate, algorithm: str) -> str:
    return ":".join(f"{b:02X}" for b in of(cert, algorithm))
