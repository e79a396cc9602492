"""enroll and renew, and what they share: pending transactions, polling, writing the result.

Files are only replaced once the new certificate has passed every check; until then KEY, CERT
and the chain stay byte-identical.  A PENDING answer is persisted under the state directory and
the same command resumes it with CertPoll, never with a second request for the same key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from scepd import pending, store
from scepd.client import (
    Algorithms,
    EnrollmentRequest,
    Issued,
    Outcome,
    Pending,
    RenewalMode,
    ScepClient,
    utc_now,
)
from scepd.commands.common import challenge, issued_line, make_client, pin
from scepd.durations import parse_duration
from scepd.errors import CARejected, LocalFileError, UsageError
from scepd.protocol.algorithms import ContentCipher, Digest
from scepd.protocol.csr import (
    DEFAULT_KEY_USAGE,
    EXTENDED_KEY_USAGES,
    KEY_USAGES,
    SubjectAltNames,
    challenge_value,
    parse_subject,
)
from scepd.protocol.keys import PrivateKey, SoftwareKey
from scepd.protocol.pkimessage import spki_of

log = logging.getLogger("scepd")


@dataclass
class Job:
    """One enroll or renew run: where results go and which keys sign and get certified."""

    args: argparse.Namespace
    client: ScepClient
    tx_dir: Path
    signer_key: PrivateKey  # signs requests and polls; the CertRep is encrypted to it
    new_key: rsa.RSAPrivateKey | None  # to be written to KEY on success (None: KEY stays)
    first_poll: dt.datetime


def _algorithms(args: argparse.Namespace) -> Algorithms:
    return Algorithms(
        digest=Digest(args.digest) if args.digest else None,
        cipher=ContentCipher(args.cipher) if args.cipher else None,
        allow_legacy=args.allow_legacy_crypto,
    )


def _sans(args: argparse.Namespace) -> SubjectAltNames:
    return SubjectAltNames(
        dns=tuple(args.dns), ip=tuple(args.ip), email=tuple(args.email), uri=tuple(args.uri)
    )


def _check_local(args: argparse.Namespace, request: EnrollmentRequest) -> None:
    """Everything local before the first request, so a typo never costs a one-time password."""
    if request.challenge is not None:
        challenge_value(request.challenge, utf8=request.challenge_utf8)
    for path in (args.cert, args.chain, args.key):
        if path is not None:
            store.check_writable(path)
    _wait_options(args)


def _wait_options(args: argparse.Namespace) -> tuple[float, float]:
    interval = parse_duration(args.poll_interval, option="--poll-interval").total_seconds()
    max_wait = parse_duration(args.max_wait, option="--max-wait").total_seconds()
    if interval <= 0:
        raise UsageError("--poll-interval must be positive")
    return interval, max_wait


def _state(args: argparse.Namespace, kind: str) -> tuple[Path, pending.Saved | None]:
    state_dir = args.state_dir or pending.default_state_dir()
    tx_dir = pending.transaction_dir(state_dir, args.cert)
    saved = pending.load(tx_dir)
    if saved is not None:
        if saved.transaction.kind != kind:
            raise UsageError(
                f"{args.cert}: a pending {saved.transaction.kind} exists for this certificate; "
                f"run `scepd {saved.transaction.kind}` again to resume it, or remove {tx_dir}"
            )
        if saved.url != args.url:
            raise UsageError(
                f"{args.cert}: the pending request is at {saved.url}, not {args.url}; use that "
                f"URL to resume it, or remove {tx_dir} to start over"
            )
    return tx_dir, saved


def _one_shot(args: argparse.Namespace, command: str, needed: tuple[str, ...]) -> None:
    """Without NAME, the options say everything: check the ones that are required then."""
    missing = [f"--{n.replace('_', '-')}" for n in needed if getattr(args, n) is None]
    if missing:
        raise UsageError(
            f"{command}: give a configured identity NAME, or {', '.join(missing)} "
            f"(see scepd {command} --help)"
        )


def enroll(args: argparse.Namespace) -> int:
    if args.name is not None:
        from scepd.commands import identities  # noqa: PLC0415 - config mode only

        return identities.enroll(args)
    _one_shot(args, "enroll", ("url", "key", "cert", "subject"))
    tx_dir, saved = _state(args, "enroll")
    key_exists = args.key.exists()
    # Start a new key first: it is generated on another core while the rest happens.
    generation = None if key_exists or saved else store.KeyGeneration(args.key_size)
    fingerprint = pin(args)
    request = EnrollmentRequest(
        subject=parse_subject(args.subject),
        sans=_sans(args),
        key_usage=tuple(args.key_usage) if args.key_usage else DEFAULT_KEY_USAGE,
        extended_key_usage=tuple(args.eku),
        challenge=challenge(args),
        challenge_utf8=args.challenge_encoding == "utf8",
    )
    existing_key = store.load_key(args.key) if key_exists else None
    _check_local(args, request)
    client = make_client(args)

    if saved is not None:
        signer_key = SoftwareKey(saved.new_key) if saved.new_key else existing_key
        if signer_key is None:
            raise LocalFileError(f"{args.key}: the key of the pending request is missing")
        job = Job(args, client, tx_dir, signer_key, saved.new_key, saved.first_poll)
        log.info("resuming pending transaction %s", saved.transaction.transaction_id)
        return _resume(job, saved)

    negotiated = client.negotiate(client.get_caps(), _algorithms(args))  # refuses legacy early
    ca = client.get_ca(fingerprint)
    new_key = generation.result() if generation is not None else None
    key = SoftwareKey(new_key) if new_key is not None else existing_key
    assert key is not None
    job = Job(args, client, tx_dir, key, new_key, utc_now())
    return _finish(job, client.enroll(key=key, request=request, negotiated=negotiated, ca=ca))


def _renewal_request(args: argparse.Namespace, cert: x509.Certificate) -> EnrollmentRequest:
    """The current certificate's identity, unless the command line says otherwise."""
    subject = parse_subject(args.subject) if args.subject else cert.subject
    sans = _sans(args)
    if not sans:
        sans = _cert_sans(cert)
    key_usage, eku = _cert_usages(cert)
    return EnrollmentRequest(
        subject=subject,
        sans=sans,
        key_usage=tuple(args.key_usage) if args.key_usage else key_usage,
        extended_key_usage=tuple(args.eku) if args.eku else eku,
        challenge=challenge(args),
        challenge_utf8=args.challenge_encoding == "utf8",
    )


def _cert_sans(cert: x509.Certificate) -> SubjectAltNames:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return SubjectAltNames()
    carried = (x509.DNSName, x509.IPAddress, x509.RFC822Name, x509.UniformResourceIdentifier)
    dropped = [n for n in names if not isinstance(n, carried)]
    if dropped:
        log.warning("subjectAltNames of other types are not requested again: %s", dropped)
    return SubjectAltNames(
        dns=tuple(names.get_values_for_type(x509.DNSName)),
        ip=tuple(str(a) for a in names.get_values_for_type(x509.IPAddress)),
        email=tuple(names.get_values_for_type(x509.RFC822Name)),
        uri=tuple(names.get_values_for_type(x509.UniformResourceIdentifier)),
    )


def _cert_usages(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    key_usage: tuple[str, ...] = DEFAULT_KEY_USAGE
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        key_usage = (
            tuple(name for name, attr in _KU_ATTRS.items() if getattr(ku, attr))
            or DEFAULT_KEY_USAGE
        )
    except x509.ExtensionNotFound:
        pass
    eku: tuple[str, ...] = ()
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        by_oid = {v: k for k, v in _EKU_OIDS.items()}
        eku = tuple(by_oid.get(u.dotted_string, u.dotted_string) for u in usages)
    except x509.ExtensionNotFound:
        pass
    return key_usage, eku


# cryptography's KeyUsage attributes for the names scepd's CSR builder takes.
_KU_ATTRS = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
}
assert set(_KU_ATTRS) <= set(KEY_USAGES)
_EKU_OIDS = {
    "serverAuth": "1.3.6.1.5.5.7.3.1",
    "clientAuth": "1.3.6.1.5.5.7.3.2",
    "codeSigning": "1.3.6.1.5.5.7.3.3",
    "emailProtection": "1.3.6.1.5.5.7.3.4",
    "timeStamping": "1.3.6.1.5.5.7.3.8",
    "ocspSigning": "1.3.6.1.5.5.7.3.9",
    "ipsecIKE": "1.3.6.1.5.5.7.3.17",
}
assert set(_EKU_OIDS) == set(EXTENDED_KEY_USAGES)


def renew(args: argparse.Namespace) -> int:
    if args.name is not None or args.all:
        from scepd.commands import identities  # noqa: PLC0415 - config mode only

        if args.name is not None and args.all:
            raise UsageError("renew: give NAME or --all, not both")
        return identities.renew(args)
    if args.force or args.dry_run:
        raise UsageError("renew: --force and --dry-run apply to configured identities")
    _one_shot(args, "renew", ("url", "key", "cert"))
    tx_dir, saved = _state(args, "renew")
    current_cert = store.load_certificate(args.cert)
    current_key = store.load_key(args.key)
    if spki_of(current_key) != spki_of(current_cert):
        raise LocalFileError(f"{args.key} is not the key of {args.cert}")
    client = make_client(args)
    if saved is not None:
        job = Job(args, client, tx_dir, current_key, saved.new_key, saved.first_poll)
        log.info("resuming pending transaction %s", saved.transaction.transaction_id)
        return _resume(job, saved)

    bits = args.key_size or current_key.public_key().key_size
    generation = None if args.reuse_key else store.KeyGeneration(bits)
    fingerprint = pin(args)
    request = _renewal_request(args, current_cert)
    _check_local(args, request)
    caps = client.get_caps()
    negotiated = client.negotiate(caps, _algorithms(args))
    ca = client.get_ca(fingerprint)
    new_key = generation.result() if generation is not None else None
    job = Job(args, client, tx_dir, current_key, new_key, utc_now())
    outcome = client.renew(
        current_key=current_key,
        current_cert=current_cert,
        new_key=SoftwareKey(new_key) if new_key is not None else current_key,
        request=request,
        mode=RenewalMode(args.mode),
        caps=caps,
        negotiated=negotiated,
        ca=ca,
    )
    return _finish(job, outcome)


def _resume(job: Job, saved: pending.Saved) -> int:
    try:
        outcome = job.client.poll(saved.transaction, job.signer_key)
    except CARejected:
        store.remove_tree(job.tx_dir)  # closed: its state and its key go
        raise
    return _finish(job, outcome)


def _finish(job: Job, outcome: Outcome) -> int:
    """Write an issued certificate, or keep (and with --wait, poll) a pending one."""
    args = job.args
    interval, max_wait = _wait_options(args)
    started = time.monotonic()
    polls = 0
    while isinstance(outcome, Pending):
        tx = outcome.transaction
        pending.save(
            job.tx_dir, tx, url=args.url, cert_path=args.cert, new_key=job.new_key,
            first_poll=job.first_poll, last_poll=utc_now(),
        )  # fmt: skip
        waited = time.monotonic() - started
        if not args.wait or waited + interval > max_wait:
            _end_progress(polls)
            print(
                f"pending: the CA holds the request for approval; transactionID {tx.transaction_id}"
            )
            print(
                f"run the same command again to poll for it (state kept in {job.tx_dir})"
                if not args.wait
                else f"still pending after {_human(waited)} (--max-wait {args.max_wait})"
            )
            return 3
        _progress(tx.transaction_id, polls, interval, waited)
        time.sleep(interval)
        polls += 1
        try:
            outcome = job.client.poll(tx, job.signer_key)
        except CARejected:
            _end_progress(polls)
            store.remove_tree(job.tx_dir)
            raise
        interval = min(interval * 1.5, max(_MAX_INTERVAL, interval))
    _end_progress(polls)
    _write(job, outcome)
    store.remove_tree(job.tx_dir)
    print(issued_line(outcome.certificate))
    written = [str(args.cert)] + ([str(args.chain)] if args.chain else [])
    if job.new_key is not None:
        written.insert(0, str(args.key))
    print("wrote " + ", ".join(written))
    return 0


_MAX_INTERVAL = 600.0  # backoff stops growing at 10 minutes between polls


def _write(job: Job, issued: Issued) -> None:
    files: list[tuple[Path, bytes, int]] = []
    if job.new_key is not None:
        files.append((job.args.key, store.key_pem(job.new_key), store.KEY_MODE))
    if job.args.chain is not None:
        files.append((job.args.chain, store.certificates_pem(issued.chain), store.CERT_MODE))
    files.append((job.args.cert, store.certificates_pem([issued.certificate]), store.CERT_MODE))
    store.replace_together(files)


def _human(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _progress(transaction_id: str, polls: int, interval: float, waited: float) -> None:
    line = (
        f"pending {transaction_id[:16]}...: {polls} polls, waited {_human(waited)}, "
        f"next poll in {_human(interval)}"
    )
    if sys.stderr.isatty():
        print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
    else:
        log.info("%s", line)


def _end_progress(polls: int) -> None:
    if polls and sys.stderr.isatty():
        print(file=sys.stderr)
