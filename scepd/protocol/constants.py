"""SCEP enumerations (RFC 8894 §3.2.1.2-§3.2.1.4) and what their values mean to an admin."""

from __future__ import annotations

import enum


class MessageType(enum.Enum):
    """messageType values; sent as a PrintableString holding the decimal number."""

    CERT_REP = "3"
    RENEWAL_REQ = "17"
    PKCS_REQ = "19"
    CERT_POLL = "20"
    GET_CERT = "21"
    GET_CRL = "22"


class PkiStatus(enum.Enum):
    SUCCESS = "0"
    FAILURE = "2"
    PENDING = "3"


class FailInfo(enum.Enum):
    BAD_ALG = "0"
    BAD_MESSAGE_CHECK = "1"
    BAD_REQUEST = "2"
    BAD_TIME = "3"
    BAD_CERT_ID = "4"

    @property
    def rfc_name(self) -> str:
        return _FAIL_INFO_NAMES[self]

    @property
    def likely_cause(self) -> str:
        return _FAIL_INFO_CAUSES[self]


_FAIL_INFO_NAMES = {
    FailInfo.BAD_ALG: "badAlg",
    FailInfo.BAD_MESSAGE_CHECK: "badMessageCheck",
    FailInfo.BAD_REQUEST: "badRequest",
    FailInfo.BAD_TIME: "badTime",
    FailInfo.BAD_CERT_ID: "badCertId",
}

# What admins most often find behind each failInfo (shared/research/protocol.md §2.8).
_FAIL_INFO_CAUSES = {
    FailInfo.BAD_ALG: "the CA does not accept the cipher or digest; "
    "try --cipher des3 or --digest sha1",
    FailInfo.BAD_MESSAGE_CHECK: "the CA could not verify or decrypt the request; check that the "
    "right RA certificate was used and the clocks agree",
    FailInfo.BAD_REQUEST: "the CA refused the request: most often a wrong, used or expired "
    "challenge password, a subject the template does not allow, or a missing enrollment right",
    FailInfo.BAD_TIME: "the request's signingTime is too far from the CA's clock; fix this "
    "machine's time (NTP)",
    FailInfo.BAD_CERT_ID: "the CA has no certificate matching the request",
}

# HRESULTs that Microsoft NDES puts in attribute 1.3.6.1.4.1.311.21.33 (protocol.md §2.8).
MS_HRESULT_CAUSES: dict[int, str] = {
    0x80070057: "E_INVALIDARG: the CA found an invalid argument in the request",
    0x800B0110: "CERT_E_WRONG_USAGE: the one-time password (challenge) was already used; "
    "get a new one from NDES's mscep_admin page",
    0x80096004: "TRUST_E_CERT_SIGNATURE: NDES requires a challenge password and none was sent",
    0x80070490: "ERROR_NOT_FOUND: the one-time password (challenge) is unknown, expired or "
    "used; get a new one",
    0x80094001: "CERTSRV_E_BAD_REQUESTSUBJECT: the CA rejected the subject",
    0x80094800: "CERTSRV_E_UNSUPPORTED_CERT_TYPE: NDES's template registry values name no "
    "template the CA offers",
    0x80090005: "NTE_BAD_DATA: NDES could not decrypt the request (wrong recipient certificate)",
    0x800706BA: "RPC_S_SERVER_UNAVAILABLE: NDES cannot reach its CA",
}


def describe_hresult(value: int) -> str:
    """``0x80070057 (E_INVALIDARG: ...)`` from a signed or unsigned 32-bit HRESULT."""
    unsigned = value & 0xFFFFFFFF
    cause = MS_HRESULT_CAUSES.get(unsigned)
    text = f"0x{unsigned:08X}"
    return f"{text} ({cause})" if cause else text
