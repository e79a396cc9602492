"""`--debug` / `debug: true`: one log line per SCEP exchange and the raw messages on disk.

What sscep's Debug setting shows, which NDES troubleshooting relies on: each exchange's
operation, HTTP status, content type and size, messageType, pkiStatus, failInfo, Microsoft's
attributes, the cipher, digest and RA certificates — and the request and response saved as DER
files under ``state_dir/debug/`` for `openssl cms -cmsout -print` or dumpasn1.  Never a secret:
the plaintext CSR is saved with its challengePassword overwritten by 'X's (so its signature no
longer verifies), and no key is ever written here.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from pathlib import Path

from scepd import store
from scepd.errors import LocalFileError
from scepd.protocol.cacerts import CACertificates
from scepd.protocol.capabilities import Negotiated
from scepd.protocol.constants import MessageType
from scepd.protocol.csr import read_challenge
from scepd.protocol.pkimessage import CertRep
from scepd.transport import HttpResponse

log = logging.getLogger("scepd")

DEBUG_MODE = 0o600  # requests name the host; nobody else's business


class Recorder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def _prefix(self, operation: str) -> Path:
        with self._lock:
            seq = next(self._seq)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")  # noqa: UP017
        return self.directory / f"{stamp}-{seq:04d}-{operation}"

    def _save(self, path: Path, data: bytes) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            store.write_atomic(path, data, DEBUG_MODE)
        except (OSError, LocalFileError) as exc:  # debugging must not break enrollment
            log.warning("debug: cannot save %s: %s", path, exc)

    def simple(self, operation: str, response: HttpResponse) -> None:
        """GetCACaps, GetCACert, GetNextCACert."""
        prefix = self._prefix(operation)
        suffix = ".txt" if operation == "GetCACaps" else ".der"
        self._save(prefix.with_name(prefix.name + "-response" + suffix), response.body)
        log.info(
            "debug: %s -> HTTP %d, %s, %d bytes; saved %s-response%s",
            operation, response.status, response.content_type or "no content type",
            len(response.body), prefix, suffix,
        )  # fmt: skip

    def pki_operation(
        self,
        *,
        message_type: MessageType,
        message_data: bytes,
        request: bytes,
        response: HttpResponse | None,
        rep: CertRep | None,
        negotiated: Negotiated,
        ca: CACertificates,
        error: str | None = None,
    ) -> None:
        prefix = self._prefix(f"PKIOperation-{message_type.name}")
        self._save(prefix.with_name(prefix.name + "-request.der"), request)
        if message_type in (MessageType.PKCS_REQ, MessageType.RENEWAL_REQ):
            self._save(prefix.with_name(prefix.name + "-csr.der"), blank_challenge(message_data))
        if response is not None:
            self._save(prefix.with_name(prefix.name + "-response.der"), response.body)
        parts = [
            f"debug: PKIOperation {message_type.name} ({message_type.value})",
            f"{'POST' if negotiated.post else 'GET'} -> "
            + (
                f"HTTP {response.status}, {response.content_type or 'no content type'}, "
                f"{len(response.body)} bytes"
                if response is not None
                else "no answer"
            ),
            f"cipher {negotiated.cipher.value}, digest {negotiated.digest.value}",
            f"RA sign={ca.verifier.subject.rfc4514_string()} "
            f"enc={ca.recipient.subject.rfc4514_string()}",
        ]
        if rep is not None:
            parts.append(f"messageType 3, pkiStatus {rep.status.name}")
            if rep.fail_info is not None:
                parts.append(f"failInfo {rep.fail_info.rfc_name}")
            if rep.ms_hresult is not None:
                parts.append(f"MS HRESULT 0x{rep.ms_hresult & 0xFFFFFFFF:08X}")
            if rep.ms_disposition:
                parts.append(f"MS disposition {rep.ms_disposition!r}")
        if error:
            parts.append(f"error: {error}")
        parts.append(f"saved {prefix}-*.der")
        log.info("%s", "; ".join(parts))


def blank_challenge(csr_der: bytes) -> bytes:
    """The CSR with its challengePassword's characters replaced by 'X' (same length, so the
    DER stays parseable); unchanged when there is none."""
    try:
        challenge, _kind = read_challenge(csr_der)
    except Exception:
        return b"<CSR not saved: unreadable>"
    if not challenge:
        return csr_der
    raw = challenge.encode("utf-8")
    if len(raw) < 128:  # short-form length: tag, length, value
        for tag in (0x13, 0x0C, 0x16, 0x14, 0x1E):
            tlv = bytes([tag, len(raw)]) + raw
            if tlv in csr_der:
                return csr_der.replace(tlv, bytes([tag, len(raw)]) + b"X" * len(raw))
    return csr_der.replace(raw, b"X" * len(raw)) if raw in csr_der else b"<CSR not saved>"
