"""SCEP attribute OIDs, registered into asn1crypto's CMS attribute table once, on import.

Registration lets requests be built by name (``{'type': 'transaction_id', ...}``).  Parsing does
not rely on the registered value types (see ``signed_attrs.py``), so a server that encodes a
value with an unexpected string type is still understood.
"""

from __future__ import annotations

from asn1crypto import cms, core

MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
PKI_STATUS = "2.16.840.1.113733.1.9.3"
FAIL_INFO = "2.16.840.1.113733.1.9.4"
SENDER_NONCE = "2.16.840.1.113733.1.9.5"
RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
FAIL_INFO_TEXT = "1.3.6.1.5.5.7.24.1"
MS_HRESULT = "1.3.6.1.4.1.311.21.33"
MS_DISPOSITION = "1.3.6.1.4.1.311.21.38"

CONTENT_TYPE = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
SIGNING_TIME = "1.2.840.113549.1.9.5"
ID_DATA = "1.2.840.113549.1.7.1"

# Microsoft "Certificate Request Agent" EKU: the NDES RA certificate that signs CertReps.
MS_ENROLLMENT_AGENT = "1.3.6.1.4.1.311.20.2.1"


class SetOfPrintableString(core.SetOf):  # type: ignore[misc]
    _child_spec = core.PrintableString


class SetOfOctetString(core.SetOf):  # type: ignore[misc]
    _child_spec = core.OctetString


class SetOfUTF8String(core.SetOf):  # type: ignore[misc]
    _child_spec = core.UTF8String


_SCEP_ATTRIBUTES: dict[str, tuple[str, type[core.SetOf]]] = {
    MESSAGE_TYPE: ("message_type", SetOfPrintableString),
    PKI_STATUS: ("pki_status", SetOfPrintableString),
    FAIL_INFO: ("fail_info", SetOfPrintableString),
    SENDER_NONCE: ("sender_nonce", SetOfOctetString),
    RECIPIENT_NONCE: ("recipient_nonce", SetOfOctetString),
    TRANSACTION_ID: ("transaction_id", SetOfPrintableString),
    FAIL_INFO_TEXT: ("fail_info_text", SetOfUTF8String),
}


def _register() -> None:
    for dotted, (name, spec) in _SCEP_ATTRIBUTES.items():
        cms.CMSAttributeType._map[dotted] = name
        cms.CMSAttribute._oid_specs[name] = spec
    # asn1crypto caches the reverse map on first use; drop it so our names resolve.
    cms.CMSAttributeType._reverse_map = None


_register()
