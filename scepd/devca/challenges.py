"""Challenge passwords: NDES-style one-time passwords and an optional static challenge.

Only hashes are stored.  OTPs are 64 random bits, so an unsalted SHA-256 is enough and lets a
presented password be looked up directly; a static challenge is chosen by a human, so it gets a
salted PBKDF2."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import secrets
from typing import Any

from scepd.devca.state import CADir

OTP_FILE = "otp.json"
PBKDF2_ITERATIONS = 200_000


class Verdict(enum.Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # never issued, or expired and forgotten (NDES: ERROR_NOT_FOUND)
    USED = "used"  # already used once (NDES: CERT_E_WRONG_USAGE)
    EXPIRED = "expired"


def _otp_hash(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def new_otp(ca: CADir, *, now: dt.datetime, lifetime: dt.timedelta) -> str:
    """A fresh one-time password (16 hex digits, as NDES makes them: PrintableString-safe)."""
    password = secrets.token_hex(8).upper()
    with ca.locked():
        entries = _live(ca.read_json(OTP_FILE, []), now)
        entries.append(
            {"sha256": _otp_hash(password), "expires": (now + lifetime).isoformat(), "used": None}
        )
        ca.write_json(OTP_FILE, entries)
    return password


def _live(entries: list[dict[str, Any]], now: dt.datetime) -> list[dict[str, Any]]:
    """Entries worth keeping: a used one is remembered until it would have expired, so a reuse
    is told apart from a typo."""
    return [e for e in entries if dt.datetime.fromisoformat(e["expires"]) > now]


def consume(ca: CADir, password: str, *, now: dt.datetime) -> Verdict:
    """Check ``password`` against the static challenge, then spend it as an OTP.  Call with
    ``ca.locked()`` held, so two requests cannot spend one OTP."""
    static = ca.config().static_challenge
    if static is not None and _static_matches(static, password):
        return Verdict.OK
    entries: list[dict[str, Any]] = ca.read_json(OTP_FILE, [])
    wanted = _otp_hash(password)
    verdict = Verdict.UNKNOWN
    for entry in entries:
        if not hmac.compare_digest(entry["sha256"], wanted):
            continue
        if entry["used"] is not None:
            verdict = Verdict.USED
        elif dt.datetime.fromisoformat(entry["expires"]) <= now:
            verdict = Verdict.EXPIRED
        else:
            entry["used"] = now.isoformat()
            verdict = Verdict.OK
        break
    ca.write_json(OTP_FILE, _live(entries, now))
    return verdict


def static_challenge_record(challenge: str) -> dict[str, Any]:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", challenge.encode("utf-8"), salt, PBKDF2_ITERATIONS)
    return {"salt": salt.hex(), "iterations": PBKDF2_ITERATIONS, "pbkdf2_sha256": digest.hex()}


def _static_matches(record: dict[str, Any], password: str) -> bool:
    digest = hashlib.pbkdf2_hmac(
        "sha256", password.encode("utf-8"), bytes.fromhex(record["salt"]), record["iterations"]
    )
    return hmac.compare_digest(digest.hex(), record["pbkdf2_sha256"])
