"""CMS EnvelopedData (RFC 5652 §6) as SCEP uses it: the pkcsPKIEnvelope."""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding

from scepd.errors import MalformedMessage, TrustError
from scepd.protocol.algorithms import (
    RESPONSE_CIPHERS,
    ContentCipher,
    cbc_decrypt,
    cbc_encrypt,
)
from scepd.protocol.asn1util import encrypted_content, to_asn1_certificate, untrusted
from scepd.protocol.keys import PrivateKey
from scepd.protocol.signeddata import same_name


def build_enveloped_data(
    *,
    content: bytes,
    recipient: x509.Certificate,
    cipher: ContentCipher,
    content_key: bytes,
    iv: bytes,
    oaep: bool = False,
) -> bytes:
    """DER ContentInfo(EnvelopedData v0): one KeyTransRecipientInfo v0 (issuerAndSerialNumber,
    RSA PKCS#1 v1.5, or RSAES-OAEP with SHA-1 as NDES may use) and ``content`` encrypted with
    ``cipher`` in CBC mode."""
    if len(content_key) != cipher.key_size or len(iv) != cipher.block_size:
        raise ValueError("content key or IV has the wrong size for the cipher")
    public_key = recipient.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise TrustError(
            f"recipient certificate {recipient.subject.rfc4514_string()} has no RSA key"
        )
    asn1_cert = to_asn1_certificate(recipient)
    ktri = cms.KeyTransRecipientInfo(
        {
            "version": "v0",
            "rid": cms.RecipientIdentifier(
                name="issuer_and_serial_number",
                value=cms.IssuerAndSerialNumber(
                    {"issuer": asn1_cert.issuer, "serial_number": asn1_cert.serial_number}
                ),
            ),
            "key_encryption_algorithm": _OAEP_ALGORITHM
            if oaep
            else {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": public_key.encrypt(
                content_key, _OAEP_SHA1 if oaep else padding.PKCS1v15()
            ),
        }
    )
    enveloped = cms.EnvelopedData(
        {
            "version": "v0",
            "recipient_infos": [cms.RecipientInfo(name="ktri", value=ktri)],
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": cipher.asn1_name, "parameters": iv},
                "encrypted_content": cbc_encrypt(cipher.asn1_name, content_key, iv, content),
            },
        }
    )
    der: bytes = cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump()
    return der


# RFC 8017 default OAEP parameters (SHA-1, MGF1-SHA-1), what NDES uses.
# RFC 4055 §4.1: the parameters are present in CMS, here spelling out the SHA-1 defaults.
_OAEP_ALGORITHM = {
    "algorithm": "rsaes_oaep",
    "parameters": {
        "hash_algorithm": {"algorithm": "sha1"},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha1"}},
    },
}
_OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303


@dataclass(frozen=True)
class OpenedEnvelope:
    content: bytes
    cipher: str  # asn1crypto name, e.g. "aes128_cbc", "des"
    key_transport: str  # "rsaes_pkcs1v15" or "rsaes_oaep"


@dataclass(frozen=True)
class _Parsed:
    recipients: tuple[tuple[bytes | None, int | None, str, AsymmetricPadding, bytes], ...]
    cipher: str
    iv: bytes
    ciphertext: bytes


def open_enveloped_data(
    data: bytes, *, key: PrivateKey, certificate: x509.Certificate | None
) -> OpenedEnvelope:
    """Decrypt an EnvelopedData addressed to ``certificate``'s key.

    Key transport RSA PKCS#1 v1.5 or RSAES-OAEP (real NDES uses OAEP); content AES-128/192/256,
    3DES or single DES in CBC mode (micromdm's scepserver always answers in DES)."""
    parsed = untrusted("envelope", lambda: _parse(data))
    candidates = [
        r
        for r in parsed.recipients
        if certificate is None
        or r[0] is None
        or (r[1] == certificate.serial_number and same_name(certificate.issuer, r[0]))
    ]  # same_name never raises: a malformed rid simply does not match
    if not candidates and len(parsed.recipients) == 1:
        candidates = list(parsed.recipients)  # rid by another form; decryption will tell
    if not candidates:
        raise TrustError("envelope is not addressed to our certificate")
    key_size = RESPONSE_CIPHERS[parsed.cipher][0]
    for _issuer, _serial, transport, pad, wrapped in candidates:
        try:
            content_key = key.decrypt(wrapped, pad)
        except ValueError:
            continue
        if len(content_key) != key_size:
            continue
        content = cbc_decrypt(parsed.cipher, content_key, parsed.iv, parsed.ciphertext)
        return OpenedEnvelope(content=content, cipher=parsed.cipher, key_transport=transport)
    raise TrustError("envelope content key does not decrypt with our key")


def _parse(data: bytes) -> _Parsed:
    info = cms.ContentInfo.load(data)
    if info["content_type"].native != "enveloped_data":
        raise MalformedMessage("pkcsPKIEnvelope is not EnvelopedData")
    env = info["content"]
    recipients = []
    for ri in env["recipient_infos"]:
        if ri.name != "ktri":
            continue  # kari/kekri/pwri: not for an RSA client
        ktri = ri.chosen
        rid = ktri["rid"]
        issuer = serial = None
        if rid.name == "issuer_and_serial_number":
            issuer = rid.chosen["issuer"].dump()
            serial = rid.chosen["serial_number"].native
        alg = ktri["key_encryption_algorithm"]
        name = alg["algorithm"].native
        recipients.append(
            (issuer, serial, name, _padding(alg), bytes(ktri["encrypted_key"].native))
        )
    if not recipients:
        raise MalformedMessage("envelope has no RSA key-transport recipient")
    eci = env["encrypted_content_info"]
    alg = eci["content_encryption_algorithm"]
    cipher = alg["algorithm"].native
    if cipher not in RESPONSE_CIPHERS:
        raise MalformedMessage(f"envelope uses unsupported cipher {cipher}")
    return _Parsed(
        recipients=tuple(recipients),
        cipher=cipher,
        iv=bytes(alg.encryption_iv),
        ciphertext=encrypted_content(eci),
    )


_OAEP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _padding(alg: cms.KeyEncryptionAlgorithm) -> AsymmetricPadding:
    name = alg["algorithm"].native
    if name == "rsaes_pkcs1v15":
        return padding.PKCS1v15()
    if name == "rsaes_oaep":
        params = alg["parameters"]
        if params.native is None:  # absent: the RFC 8017 defaults, SHA-1 and MGF1-SHA-1
            return _OAEP_SHA1
        digest = params["hash_algorithm"]["algorithm"].native
        mgf_digest = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
        label = params["p_source_algorithm"]["parameters"].native or None
        if digest not in _OAEP_HASHES or mgf_digest not in _OAEP_HASHES:
            raise MalformedMessage(f"unsupported OAEP digest {digest}/{mgf_digest}")
        return padding.OAEP(
            mgf=padding.MGF1(_OAEP_HASHES[mgf_digest]()),
            algorithm=_OAEP_HASHES[digest](),
            label=label,
        )
    raise MalformedMessage(f"unsupported key transport {name}")
