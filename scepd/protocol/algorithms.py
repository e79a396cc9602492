"""Digest and content-encryption algorithms SCEP uses, mapped to asn1crypto names and
cryptography primitives."""

from __future__ import annotations

import enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sympadding
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes

from scepd._compat import triple_des
from scepd.errors import MalformedMessage, TrustError


class Digest(enum.Enum):
    """Message digests; MD5 only exists to be refused or, behind the legacy switch, sent."""

    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA512 = "sha512"
    MD5 = "md5"

    def algorithm(self) -> hashes.HashAlgorithm:
        return _HASHES[self.value]()

    @property
    def asn1_name(self) -> str:
        return self.value

    @property
    def legacy(self) -> bool:
        return self is Digest.MD5


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# Digests a response may use.  MD5 is refused: RFC 8894 §2.9 forbids it.
_VERIFY_DIGESTS = ("sha1", "sha224", "sha256", "sha384", "sha512")


def hash_for_verify(asn1_name: str) -> hashes.HashAlgorithm:
    """The hash of a digest algorithm found in a response, or TrustError when refused."""
    if asn1_name not in _VERIFY_DIGESTS:
        raise TrustError(f"response uses digest {asn1_name}, which SCEP forbids or scepd lacks")
    return _HASHES[asn1_name]()


class ContentCipher(enum.Enum):
    """Content-encryption ciphers scepd sends.  Single DES only behind the legacy switch."""

    AES128 = "aes"
    DES3 = "des3"
    DES = "des"

    @property
    def asn1_name(self) -> str:
        return {"aes": "aes128_cbc", "des3": "tripledes_3key", "des": "des"}[self.value]

    @property
    def key_size(self) -> int:
        return {"aes": 16, "des3": 24, "des": 8}[self.value]

    @property
    def block_size(self) -> int:
        return 16 if self is ContentCipher.AES128 else 8

    @property
    def legacy(self) -> bool:
        return self is ContentCipher.DES


# asn1crypto EncryptionAlgorithmId names accepted in responses -> (key size, block size).
RESPONSE_CIPHERS: dict[str, tuple[int, int]] = {
    "aes128_cbc": (16, 16),
    "aes192_cbc": (24, 16),
    "aes256_cbc": (32, 16),
    "tripledes_3key": (24, 8),
    "des": (8, 8),
}


def _algorithm(asn1_name: str, key: bytes) -> CipherAlgorithm:
    if asn1_name.startswith("aes"):
        return algorithms.AES(key)
    return triple_des(key)


def cbc_encrypt(asn1_name: str, key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """CBC with PKCS#7 padding (RFC 5652 §6.3)."""
    block_bits = RESPONSE_CIPHERS[asn1_name][1] * 8
    padder = sympadding.PKCS7(block_bits).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(_algorithm(asn1_name, key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def cbc_decrypt(asn1_name: str, key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Inverse of :func:`cbc_encrypt`; wrong key, IV or padding is a MalformedMessage."""
    if asn1_name not in RESPONSE_CIPHERS:
        raise MalformedMessage(f"envelope uses unsupported cipher {asn1_name}")
    key_size, block_size = RESPONSE_CIPHERS[asn1_name]
    if len(key) != key_size:
        raise MalformedMessage(
            f"envelope content key is {len(key)} bytes, {asn1_name} needs {key_size}"
        )
    if len(iv) != block_size or not ciphertext or len(ciphertext) % block_size:
        raise MalformedMessage("envelope IV or ciphertext has the wrong length for its cipher")
    decryptor = Cipher(_algorithm(asn1_name, key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = sympadding.PKCS7(block_size * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise MalformedMessage("envelope did not decrypt: bad padding (wrong key?)") from None
