"""SCEP over HTTP (RFC 8894 §4.1) for devca, without sockets: path and operation routing,
GET message decoding, Content-Types, and one log line per request."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import Encoding

from scepd.devca import identities, operations
from scepd.devca.state import CADir
from scepd.errors import MalformedMessage, ScepError
from scepd.protocol import responder

STANDARD_PATHS = ("/scep", "/scep/pkiclient.exe")
NDES_PATHS = ("/certsrv/mscep/mscep.dll/pkiclient.exe", "/certsrv/mscep/mscep.dll")
# micromdm's list plus GetNextCACert; NDES 2012 R2-2022's exact answer (protocol.md §2.2).
STANDARD_CAPS = b"Renewal\nSHA-1\nSHA-256\nAES\nDES3\nSCEPStandard\nPOSTPKIOperation\nGetNextCACert"
NDES_CAPS = b"Renewal\r\nSHA-512\r\nSHA-256\r\nSHA-1\r\nDES3\r\n"
PKI_MESSAGE = "application/x-pki-message"
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    log: str


def decode_get_message(raw: str) -> bytes:
    """GET ``message``: standard or URL-safe base64, percent-escaped or not (macOS leaves
    ``+`` and ``/`` as they are), padding optional, line breaks ignored."""
    text = urllib.parse.unquote(raw)
    # An unescaped "+" may have been turned into a space by a form encoder on the way.
    text = re.sub(r"[\r\n\t]", "", text).replace(" ", "+")
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMessage("GET message is not base64") from None


def _query(raw_query: str) -> dict[str, str]:
    """Raw (still escaped) values: ``parse_qs`` would turn an unescaped ``+`` into a space."""
    params: dict[str, str] = {}
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        params.setdefault(urllib.parse.unquote(name), value)
    return params


def _printable(value: str) -> str:
    """Untrusted text for a log line: no spaces, quotes or control characters, bounded."""
    cleaned = "".join(c if c.isprintable() and c not in " \"'" else "?" for c in value)
    return cleaned[:80] or "-"


class ScepApp:
    def __init__(
        self, ca_dir: CADir, clock: Callable[[], dt.datetime], rand: Callable[[int], bytes]
    ) -> None:
        self._dir = ca_dir
        self._clock = clock
        self._ids = identities.load(ca_dir)
        self._ops = operations.Operations(ca_dir, self._ids, clock, rand)
        self.paths = NDES_PATHS if self._ids.ndes else STANDARD_PATHS

    def handle(self, method: str, target: str, body: bytes) -> Response:
        path, _, raw_query = target.partition("?")
        params = _query(raw_query)
        operation = urllib.parse.unquote(params.get("operation", ""))
        if path.rstrip("/") not in self.paths:
            return self._text(404, "not a SCEP path", operation or "-")
        if operation == "GetCACaps":
            caps = NDES_CAPS if self._ids.ndes else STANDARD_CAPS
            return Response(200, "text/plain", caps, self._line(operation, result="200"))
        if operation == "GetCACert":
            return self._get_ca_cert()
        if operation == "GetNextCACert":
            return self._get_next_ca_cert()
        if operation == "PKIOperation":
            if method == "POST":
                der = body
            elif "message" in params:
                try:
                    der = decode_get_message(params["message"])
                except ScepError as exc:
                    return self._text(400, str(exc), operation)
            else:
                return self._text(400, "PKIOperation needs a message", operation)
            return self._pki_operation(der)
        return self._text(400, "unknown operation", _printable(operation))

    def _get_ca_cert(self) -> Response:
        certs = self._ids.ca_certs_response
        if len(certs) == 1:
            # One CA, as micromdm answers: the DER certificate itself (RFC 8894 §4.2.1.1).
            body = certs[0].public_bytes(Encoding.DER)
            return Response(200, "application/x-x509-ca-cert", body, self._line("GetCACert"))
        body = responder.certs_only(certs)
        return Response(200, "application/x-x509-ca-ra-cert", body, self._line("GetCACert"))

    def _get_next_ca_cert(self) -> Response:
        if self._ids.ndes or not self._dir.has("next-ca.pem"):
            return self._text(404, "no CA rollover in progress", "GetNextCACert")
        body = responder.next_ca_cert_response(
            new_ca=(self._dir.load_cert("next-ca.pem"),),
            signer=self._ids.ca,
            key=self._dir.load_key("ca.key"),
            now=self._clock(),
        )
        return Response(200, "application/x-x509-next-ca-cert", body, self._line("GetNextCACert"))

    def _pki_operation(self, der: bytes) -> Response:
        try:
            message = responder.read_pki_message(der)
        except ScepError as exc:
            return self._text(400, f"not a pkiMessage: {exc}", "PKIOperation")
        outcome = self._ops.handle(message)
        line = self._line(
            "PKIOperation",
            message_type=_printable(message.message_type),
            transaction_id=_printable(message.transaction_id),
            result=outcome.result,
        )
        return Response(200, PKI_MESSAGE, outcome.body, line)

    def _text(self, status: int, text: str, operation: str) -> Response:
        return Response(
            status, "text/plain", text.encode() + b"\n", self._line(operation, result=str(status))
        )

    @staticmethod
    def _line(
        operation: str, *, message_type: str = "-", transaction_id: str = "-", result: str = "200"
    ) -> str:
        return (
            f"operation={operation} messageType={message_type} "
            f"transactionID={transaction_id} result={result}"
        )
