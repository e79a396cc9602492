"""The one small interface through which protocol code uses a private key.

Protocol code signs (pkiMessage, CSR, self-signed signer certificate) and decrypts (the content
key of a CertRep's envelope) only through :class:`PrivateKey`, so a key kept in an HSM or TPM
(PKCS#11) can be added as another implementation without touching protocol code.  RSA only:
SCEP's key transport needs an encryption-capable key.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding


class PrivateKey(Protocol):
    """An RSA private key, wherever it is kept."""

    def public_key(self) -> rsa.RSAPublicKey: ...

    def sign(self, data: bytes, digest: hashes.HashAlgorithm) -> bytes:
        """RSASSA-PKCS1-v1_5 signature of ``data`` hashed with ``digest``."""
        ...

    def decrypt(self, ciphertext: bytes, pad: AsymmetricPadding) -> bytes:
        """RSA decryption (PKCS#1 v1.5 or OAEP) of a wrapped content-encryption key."""
        ...


class SoftwareKey:
    """A :class:`PrivateKey` held in memory by cryptography."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("SCEP needs an RSA key")
        self._key = key

    @property
    def key(self) -> rsa.RSAPrivateKey:
        return self._key

    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    def sign(self, data: bytes, digest: hashes.HashAlgorithm) -> bytes:
        return self._key.sign(data, padding.PKCS1v15(), digest)

    def decrypt(self, ciphertext: bytes, pad: AsymmetricPadding) -> bytes:
        return self._key.decrypt(ciphertext, pad)
