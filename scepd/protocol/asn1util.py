"""Small helpers over asn1crypto for the parts of real SCEP traffic it does not take as is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from asn1crypto import core, parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from scepd.errors import MalformedMessage, ScepError

T = TypeVar("T")

_CLASS_CONTEXT = 2


def untrusted(what: str, func: Callable[[], T]) -> T:
    """Run a parse of network bytes; any failure becomes a MalformedMessage naming ``what``.

    asn1crypto parses lazily and cryptography's loaders raise ValueError and friends deep
    inside; bytes from the network must only ever produce a ScepError."""
    try:
        return func()
    except ScepError:
        raise
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MalformedMessage(f"malformed {what}: {detail}") from exc


def tlvs(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(class, method, tag, contents) of each TLV in ``data``; BER and indefinite length ok."""
    out: list[tuple[int, int, int, bytes]] = []
    pos = 0
    while pos < len(data):
        size = parser.peek(data[pos:])
        class_, method, tag, _header, contents, _trailer = parser.parse(data[pos : pos + size])
        out.append((class_, method, tag, contents))
        pos += size
    return out


def octets(method: int, contents: bytes) -> bytes:
    """The value of an OCTET STRING in primitive or BER constructed (chunked) form."""
    if method == 0:
        return contents
    return b"".join(octets(m, c) for _cls, m, _tag, c in tlvs(contents))


def encrypted_content(encrypted_content_info: core.Sequence) -> bytes:
    """The [0] IMPLICIT encryptedContent of an EncryptedContentInfo.

    micromdm's scepserver sends it in BER constructed form, which asn1crypto 1.5.1 refuses
    ("method should have been primitive"), so the field is read from the raw TLVs."""
    for class_, method, tag, contents in tlvs(encrypted_content_info.contents):
        if class_ == _CLASS_CONTEXT and tag == 0:
            return octets(method, contents)
    raise MalformedMessage("envelope has no encryptedContent")


class _AnyValues(core.SetOf):  # type: ignore[misc]
    _child_spec = core.Any


class _AnyAttribute(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar = [("type", core.ObjectIdentifier), ("values", _AnyValues)]


class _AnyAttributes(core.SetOf):  # type: ignore[misc]
    _child_spec = _AnyAttribute


def attributes(signed_attrs_der: bytes) -> dict[str, Any]:
    """Signed attributes by dotted OID -> native value, whatever string type each uses.

    Each SCEP attribute must have exactly one value (RFC 8894 §3.2.1)."""
    result: dict[str, Any] = {}
    for attribute in _AnyAttributes.load(signed_attrs_der):
        oid = attribute["type"].dotted
        values = list(attribute["values"])
        if oid in result or len(values) != 1:
            raise MalformedMessage(f"signed attribute {oid} must appear once with one value")
        result[oid] = core.load(values[0].dump()).native
    return result


def set_of_attributes_der(signed_attrs: core.Asn1Value) -> bytes:
    """The signed attributes re-tagged as SET OF, exactly as signed (RFC 5652 §5.4)."""
    der: bytes = signed_attrs.untag().dump()
    return der


def to_asn1_certificate(cert: x509.Certificate) -> Any:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
