"""The one place for differences between Debian bookworm's cryptography (38.0.4) and PyPI's."""

from __future__ import annotations

import datetime as dt
import re

from cryptography import x509
from cryptography.hazmat.primitives.ciphers import CipherAlgorithm

try:  # cryptography >= 43 moved 3DES to the "decrepit" namespace; 48 removes the old name.
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES as _TripleDES
except ImportError:  # pragma: no cover - cryptography < 43 (bookworm)
    from cryptography.hazmat.primitives.ciphers.algorithms import (  # type: ignore[no-redef]
        TripleDES as _TripleDES,
    )


def triple_des(key: bytes) -> CipherAlgorithm:
    """3DES-EDE; a single-DES key is expanded to K1=K2=K3 (which is single DES)."""
    if len(key) == 8:
        key = key * 3
    return _TripleDES(key)


def not_valid_before(cert: x509.Certificate) -> dt.datetime:
    """notBefore as an aware UTC datetime (``*_utc`` properties arrived in cryptography 42)."""
    if hasattr(cert, "not_valid_before_utc"):
        return cert.not_valid_before_utc
    return cert.not_valid_before.replace(tzinfo=dt.UTC)


def not_valid_after(cert: x509.Certificate) -> dt.datetime:
    """notAfter as an aware UTC datetime."""
    if hasattr(cert, "not_valid_after_utc"):
        return cert.not_valid_after_utc
    return cert.not_valid_after.replace(tzinfo=dt.UTC)


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (``x509.load_pem_x509_certificates`` needs 39)."""
    return [x509.load_pem_x509_certificate(block) for block in _PEM_CERT.findall(data)]
