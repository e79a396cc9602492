"""Configured identities: decide what each needs and do it, once.

Both the daemon's scheduler and the one-shot commands (`renew NAME`, `renew --all`, `enroll
NAME`, `status`) go through :class:`Manager`, so a timer-based setup behaves exactly like the
daemon.  One call of :meth:`Manager.process` is one attempt: under the identity's lock, it
recovers an interrupted swap, re-reads the certificate on disk, polls a pending request or makes
a new one, swaps the files in and runs the hooks, and records the result for `status` and the
scheduler.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from scepd import pending, policy, store
from scepd._compat import not_valid_after, not_valid_before
from scepd.client import (
    Algorithms,
    EnrollmentRequest,
    Issued,
    Outcome,
    Pending,
    RenewalMode,
    ScepClient,
    over_http,
    utc_now,
)
from scepd.config import Challenge, Command, Config, Identity, Server, ShellCommand
from scepd.daemon.journal import PRIORITY, Reporter, failure_priority
from scepd.daemon.metrics import IdentityMetrics, write_metrics
from scepd.debugdump import Recorder
from scepd.errors import CARejected, HookError, ScepError, TransportError, UsageError
from scepd.hooks import HookResult, hook_environment, run_hook
from scepd.protocol.cacerts import CACertificates
from scepd.protocol.capabilities import Capabilities
from scepd.protocol.csr import SubjectAltNames, parse_subject
from scepd.protocol.fingerprint import Fingerprint
from scepd.protocol.keys import SoftwareKey
from scepd.protocol.oids import MS_ENROLLMENT_AGENT

log = logging.getLogger("scepd")

CA_EXPIRY_WARNING = dt.timedelta(days=30)
BATCH_HOOK_TIMEOUT = 300.0  # one reload after many renewals may take a while


@dataclass
class IdentityState:
    """What `status` shows and the scheduler needs between runs (state_dir/identities/NAME)."""

    last_attempt: str | None = None
    last_result: str | None = None  # enrolled, renewed, pending, failed, waiting, hook-failed
    last_error: str | None = None
    failures: int = 0
    last_success: str | None = None
    next_attempt: str | None = None
    next_action: str | None = None
    failures_total: int = 0  # every failed attempt ever, for the metrics counter
    ca_not_after: str | None = None  # the issuing CA's notAfter at the last exchange


@dataclass(frozen=True)
class RunResult:
    identity: str
    action: str  # enrolled, renewed, pending, not-due, failed, waiting, would-renew, would-enroll
    message: str
    next_at: dt.datetime | None
    hook_failed: bool = False
    renewed: bool = False  # a new certificate was swapped in


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when else None


def read_challenge(challenge: Challenge | None) -> str | None:
    """The configured challenge (file, environment, systemd credential), or None."""
    if challenge is None:
        return None
    if challenge.file is not None:
        return store.read_secret(challenge.file) if challenge.file.exists() else None
    if challenge.env is not None:
        return os.environ.get(challenge.env, "").strip() or None
    if challenge.credential is not None:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        path = Path(directory) / challenge.credential if directory else None
        return store.read_secret(path) if path is not None and path.exists() else None
    return None


class Manager:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], dt.datetime] = utc_now,
        host: str | None = None,
        rng: Callable[[], float] = random.random,
        debug: bool = False,
        reporter: Reporter | None = None,
    ) -> None:
        self.config = config
        self._reporter = reporter or Reporter()
        self._ca_not_after: dict[str, dt.datetime] = {}
        self._debug = debug  # --debug: every server's exchanges are recorded
        self._clock = clock
        self._host = host or socket.gethostname()
        self._rng = rng

    # --- where things are ---------------------------------------------------------------------
    def identity_dir(self, name: str) -> Path:
        return self.config.state_dir / "identities" / name

    def fileset(self, identity: Identity) -> store.FileSet:
        return store.FileSet(
            key=identity.key,
            cert=identity.cert,
            chain=identity.chain,
            fullchain=identity.fullchain,
            owner=identity.owner,
            group=identity.group,
            key_mode=identity.key_mode,
            cert_mode=identity.cert_mode,
        )

    def state(self, name: str) -> IdentityState:
        path = self.identity_dir(name) / "status.json"
        try:
            return IdentityState(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return IdentityState()

    def _save_state(self, name: str, state: IdentityState) -> None:
        directory = self.identity_dir(name)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = (json.dumps(asdict(state), indent=1) + "\n").encode()
        store.write_atomic(directory / "status.json", data, 0o600)

    def pending_transaction(self, identity: Identity) -> pending.Saved | None:
        return pending.load(pending.transaction_dir(self.config.state_dir, identity.cert))

    def current(self, identity: Identity) -> x509.Certificate | None:
        """The certificate on disk, when its key is there too and matches it."""
        if not identity.cert.exists() or not identity.key.exists():
            return None
        try:
            cert = store.load_certificate(identity.cert)
            public = cert.public_key()
            modulus = store.key_modulus(identity.key)
            if modulus is None:
                store.load_key(identity.key)  # says what is wrong with the file
        except ScepError as exc:
            log.warning("%s: %s", identity.name, exc)
            return None
        if isinstance(public, rsa.RSAPublicKey) and public.public_numbers().n == modulus:
            return cert
        return None

    def due(self, identity: Identity, cert: x509.Certificate) -> dt.datetime:
        return policy.next_renewal(
            not_valid_before(cert),
            not_valid_after(cert),
            renew_at=identity.renew_at,
            renew_before=identity.renew_before,
            jitter=identity.jitter,
            host=self._host,
            identity=identity.name,
        )

    # --- one attempt ---------------------------------------------------------------------------
    def process(
        self, identity: Identity, *, force: bool = False, dry_run: bool = False, wait: float = 10.0
    ) -> RunResult:
        directory = self.identity_dir(identity.name)
        with store.identity_lock(
            directory, identity.name, wait=wait, holder=f"scepd pid {os.getpid()}"
        ):
            recovered = store.recover(directory, self.fileset(identity))
            if recovered:
                log.warning("%s: %s", identity.name, recovered)
            return self._process_locked(identity, force=force, dry_run=dry_run)

    def _process_locked(self, identity: Identity, *, force: bool, dry_run: bool) -> RunResult:
        now = self._clock()
        state = self.state(identity.name)
        cert = self.current(identity)  # re-read: someone may have replaced it
        saved = self.pending_transaction(identity)
        if saved is None and cert is not None and not force:
            due = policy.earliest_next_attempt(
                _parse(state.last_attempt), self.due(identity, cert), _spacing(cert)
            )
            if due > now:
                return RunResult(
                    identity.name, "not-due", f"renewal due {due:%Y-%m-%d %H:%M}Z", due
                )
        if cert is not None:
            self._expiry_event(identity, cert, now)
        challenge = read_challenge(identity.challenge)
        if saved is None and cert is None and challenge is None:
            message = "no certificate and no challenge password to enroll with; add it and reload"
            if state.last_result != "waiting":  # log once, then wait for a reload
                log.error("%s: %s", identity.name, message)
            result = RunResult(identity.name, "waiting", message, None)
            self._record(identity, state, result, now, error=message)
            return result
        if dry_run:
            what = "poll" if saved else ("renew" if cert else "enroll")
            hooks = [] if saved else [_describe(c) for c in identity.hooks.pre_renew]
            hooks += [_describe(c) for c in identity.hooks.post_renew]
            text = f"would {what}" + (f"; hooks: {', '.join(hooks)}" if hooks else "")
            return RunResult(identity.name, f"would-{what}", text, None)
        try:
            outcome, new_key = self._attempt(identity, cert, saved, challenge)
        except ScepError as exc:
            if isinstance(exc, CARejected) and saved is not None:
                store.remove_tree(saved.directory)  # the CA closed the transaction
            self._reporter.event(
                "renewal-failed", str(exc), identity=identity.name, server=identity.server.name,
                priority=failure_priority(
                    not_after=not_valid_after(cert) if cert else None,
                    not_before=not_valid_before(cert) if cert else None, now=now,
                ),
                serial=f"{cert.serial_number:X}" if cert else None,
                not_after=not_valid_after(cert) if cert else None,
                fail_info=getattr(exc, "fail_info", None),
            )  # fmt: skip
            retry_after = getattr(exc, "retry_after", None)
            return self._failed(
                identity, state, cert, now, str(exc),
                retry_after=dt.timedelta(seconds=retry_after) if retry_after else None,
            )  # fmt: skip
        if isinstance(outcome, Pending):
            when = now + policy.retry_delay(
                state.failures + 1, now=now, not_after=not_valid_after(cert) if cert else None,
                initial=dt.timedelta(minutes=1), maximum=dt.timedelta(hours=1), rng=self._rng,
            ).delay  # fmt: skip
            result = RunResult(
                identity.name, "pending",
                f"pending at the CA, transactionID {outcome.transaction.transaction_id}", when,
            )  # fmt: skip
            self._reporter.event(
                "pending", result.message, identity=identity.name, server=identity.server.name,
                priority=PRIORITY["info"], transaction_id=outcome.transaction.transaction_id,
            )  # fmt: skip
            self._record(identity, state, result, now)
            return result
        return self._installed(
            identity=identity, state=state, old=cert, issued=outcome, new_key=new_key, now=now
        )

    def _attempt(
        self,
        identity: Identity,
        cert: x509.Certificate | None,
        saved: pending.Saved | None,
        challenge: str | None,
    ) -> tuple[Outcome, rsa.RSAPrivateKey | None]:
        """The CA's answer, and the new key it certifies (None: the key is kept)."""
        if saved is not None:
            signer = (
                store.load_key(identity.key)
                if saved.transaction.kind == "renew"
                else SoftwareKey(saved.new_key)  # type: ignore[arg-type]
            )
            client = self._client(identity.server, saved.url)
            return client.poll(saved.transaction, signer), saved.new_key
        for command in identity.hooks.pre_renew:
            env = self._hook_env(identity, cert, None)
            result = self._run_hook(identity, command, env)
            if not result:
                raise HookError(f"pre_renew hook {_describe(command)} failed; not renewing")
        return self._with_failover(identity, cert, challenge)

    def _with_failover(
        self, identity: Identity, cert: x509.Certificate | None, challenge: str | None
    ) -> tuple[Outcome, rsa.RSAPrivateKey | None]:
        """Each URL in order while they are unreachable; a CA's answer is final."""
        last: TransportError | None = None
        for url in identity.server.urls:
            client = self._client(identity.server, url)
            try:
                outcome, new_key = self._request(identity, client, cert, challenge)
            except TransportError as exc:
                log.warning("%s: %s; trying the next URL", identity.name, exc)
                last = exc
                continue
            if isinstance(outcome, Pending):
                pending.save(
                    pending.transaction_dir(self.config.state_dir, identity.cert),
                    outcome.transaction, url=url, cert_path=identity.cert,
                    new_key=new_key, first_poll=self._clock(), last_poll=self._clock(),
                )  # fmt: skip
            return outcome, new_key
        assert last is not None
        raise last

    def _client(self, server: Server, url: str) -> ScepClient:
        debug = self._debug or server.debug
        return over_http(
            url,
            timeout=server.timeout.total_seconds(),
            ca_bundle=str(server.ca_bundle) if server.ca_bundle else None,
            ca_identifier=server.ca_identifier,
            recorder=Recorder(self.config.state_dir / "debug") if debug else None,
            clock=self._clock,
        )

    def _request(
        self,
        identity: Identity,
        client: ScepClient,
        cert: x509.Certificate | None,
        challenge: str | None,
    ) -> tuple[Outcome, rsa.RSAPrivateKey | None]:
        server = identity.server
        caps = client.get_caps()
        negotiated = client.negotiate(caps, Algorithms())
        pin = Fingerprint.parse(server.ca_fingerprint) if server.ca_fingerprint else None
        ca = client.get_ca(pin)  # the pin is re-checked with every renewal
        if self._warn_expiring(identity, ca) and caps.get_next_ca_cert:
            self._fetch_next_ca(identity, client, caps, ca)
        ndes = _is_ndes(server, ca)
        new_key = None
        if cert is None or identity.renewal.new_key:
            new_key = store.KeyGeneration(identity.key_bits).result()
        send = identity.renewal.send_challenge
        if send is None:
            send = not ndes
        request = EnrollmentRequest(
            subject=parse_subject(identity.subject),
            sans=SubjectAltNames(
                dns=identity.san_dns,
                ip=identity.san_ip,
                email=identity.san_email,
                uri=identity.san_uri,
            ),
            key_usage=identity.key_usage,
            extended_key_usage=identity.extended_key_usage,
            challenge=challenge if (cert is None or send) else None,
        )
        if cert is None:
            assert new_key is not None
            key = SoftwareKey(new_key)
            return client.enroll(key=key, request=request, negotiated=negotiated, ca=ca), new_key
        current_key = store.load_key(identity.key)
        mode = RenewalMode(identity.renewal.mode)
        if mode is RenewalMode.AUTO and ndes:
            mode = RenewalMode.SIGNED_PKCS_REQ  # how Windows renews against NDES
        outcome = client.renew(
            current_key=current_key,
            current_cert=cert,
            new_key=SoftwareKey(new_key) if new_key is not None else current_key,
            request=request,
            mode=mode,
            caps=caps,
            negotiated=negotiated,
            ca=ca,
        )
        return outcome, new_key

    def _warn_expiring(self, identity: Identity, ca: CACertificates) -> bool:
        """Warn about CA and RA certificates expiring within 30 days; True if a CA one does."""
        horizon = self._clock() + CA_EXPIRY_WARNING
        ca_expiring = False
        for cert in (*ca.ra_certs, *ca.ca_certs):
            if not_valid_after(cert) < horizon:
                ca_expiring = ca_expiring or cert in ca.ca_certs
                self._reporter.event(
                    "ca-expiring",
                    f"{ca.role(cert)} certificate {cert.subject.rfc4514_string()} expires "
                    f"{not_valid_after(cert):%Y-%m-%d}: renew it at the CA (an expired NDES RA "
                    "certificate stops every enrollment)",
                    identity=identity.name, server=identity.server.name,
                    priority=PRIORITY["warning"], serial=f"{cert.serial_number:X}",
                    not_after=not_valid_after(cert),
                )  # fmt: skip
        self._ca_not_after[identity.name] = not_valid_after(ca.issuing_ca)
        return ca_expiring

    def _fetch_next_ca(
        self, identity: Identity, client: ScepClient, caps: Capabilities, ca: CACertificates
    ) -> None:
        """GetNextCACert (verified by the current CA) into the state directory, for the admin
        to distribute; a failure here never stops the renewal."""
        try:
            certs = client.get_next_ca(caps, ca)
        except ScepError as exc:
            log.warning("%s: GetNextCACert: %s", identity.name, exc)
            return
        path = self.identity_dir(identity.name) / "next-ca.pem"
        store.write_certificates(path, certs)
        log.warning(
            "%s: the CA's next certificate (%s) saved in %s: add it to the trust stores "
            "before the current one expires",
            identity.name, certs[0].subject.rfc4514_string(), path,
        )  # fmt: skip

    # --- after the CA issued -------------------------------------------------------------------
    def _installed(
        self,
        *,
        identity: Identity,
        state: IdentityState,
        old: x509.Certificate | None,
        issued: Issued,
        new_key: rsa.RSAPrivateKey | None,
        now: dt.datetime,
    ) -> RunResult:
        chain_pem = store.certificates_pem(issued.chain)
        cert_pem = store.certificates_pem([issued.certificate])
        store.swap_in(
            self.identity_dir(identity.name),
            self.fileset(identity),
            store.NewFiles(
                key_pem=store.key_pem(new_key) if new_key is not None else None,
                cert_pem=cert_pem,
                chain_pem=chain_pem if identity.chain else None,
                fullchain_pem=cert_pem + chain_pem if identity.fullchain else None,
            ),
        )
        saved = self.pending_transaction(identity)
        if saved is not None:
            store.remove_tree(saved.directory)
        cert = issued.certificate
        action = "renewed" if old is not None else "enrolled"
        self._reporter.event(
            action,
            f"{action} {cert.subject.rfc4514_string()} serial {cert.serial_number:X}, valid "
            f"until {not_valid_after(cert):%Y-%m-%d %H:%M:%S}Z",
            identity=identity.name, server=identity.server.name, priority=PRIORITY["notice"],
            serial=f"{cert.serial_number:X}", not_after=not_valid_after(cert),
        )  # fmt: skip
        env = self._hook_env(identity, cert, old)
        hook_failed = False
        for command in identity.hooks.post_renew:
            if not self._run_hook(identity, command, env):
                hook_failed = True
                self._reporter.event(
                    "hook-failed",
                    f"post_renew hook {_describe(command)} failed; the new certificate is kept",
                    identity=identity.name, priority=PRIORITY["err"],
                    serial=f"{cert.serial_number:X}", not_after=not_valid_after(cert),
                )  # fmt: skip
        due = self.due(identity, cert)
        spacing = _spacing(cert)
        if policy.is_renewal_loop(
            issued_not_before=not_valid_before(cert), issued_not_after=not_valid_after(cert),
            renew_at=identity.renew_at, renew_before=identity.renew_before, issued_at=now,
            spacing=spacing,
        ):  # fmt: skip
            log.error(
                "%s: the CA issued a certificate valid until %s, which the policy makes due at "
                "once; check renew_before (renewals are spaced, not looped)",
                identity.name, f"{not_valid_after(cert):%Y-%m-%d %H:%M}Z",
            )  # fmt: skip
        next_at = _before_expiry(
            identity.name, policy.earliest_next_attempt(now, due, spacing), cert, now
        )
        result = RunResult(
            identity.name, action, f"{action}: serial {cert.serial_number:X}", next_at,
            hook_failed=hook_failed, renewed=True,
        )  # fmt: skip
        self._record(identity, state, result, now, success=True)
        return result

    def _hook_env(
        self, identity: Identity, cert: x509.Certificate | None, old: x509.Certificate | None
    ) -> dict[str, str]:
        extra = {
            "SCEPD_IDENTITY": identity.name,
            "SCEPD_CERT": str(identity.cert),
            "SCEPD_KEY": str(identity.key),
            "SCEPD_CHAIN": str(identity.chain or ""),
            "SCEPD_FULLCHAIN": str(identity.fullchain or ""),
            "SCEPD_SERIAL": f"{cert.serial_number:X}" if cert else "",
            "SCEPD_OLD_SERIAL": f"{old.serial_number:X}" if old else "",
            "SCEPD_NOT_AFTER": f"{not_valid_after(cert):%Y-%m-%dT%H:%M:%SZ}" if cert else "",
            "SCEPD_SUBJECT": cert.subject.rfc4514_string() if cert else identity.subject,
        }
        return hook_environment(os.environ, extra)

    def _run_hook(self, identity: Identity, command: Command, env: dict[str, str]) -> bool:
        result = _hook(command, env, identity.hook_timeout.total_seconds())
        return result.ok  # run_hook has logged a failure at err, with its output

    def run_batch_hooks(self, renewed: list[str]) -> bool:
        """post_renew_batch once after the renewals of one run; True when all succeeded."""
        if not renewed:
            return True
        env = hook_environment(os.environ, {"SCEPD_IDENTITIES": " ".join(renewed)})
        ok = True
        for command in self.config.post_renew_batch:
            if not _hook(command, env, BATCH_HOOK_TIMEOUT).ok:  # logged by run_hook
                ok = False
        return ok

    # --- bookkeeping ---------------------------------------------------------------------------
    def _failed(
        self,
        identity: Identity,
        state: IdentityState,
        cert: x509.Certificate | None,
        now: dt.datetime,
        error: str,
        *,
        retry_after: dt.timedelta | None = None,
    ) -> RunResult:
        plan = policy.retry_delay(
            state.failures + 1,
            now=now,
            not_after=not_valid_after(cert) if cert else None,
            initial=identity.retry.initial,
            maximum=identity.retry.max,
            rng=self._rng,
            retry_after=retry_after,  # the server said when; never sooner
        )
        if plan.past_expiry:
            log.error(
                "%s: the certificate expires before the next retry can help (%s); act now",
                identity.name, f"{not_valid_after(cert):%Y-%m-%d %H:%M}Z" if cert else "no cert",
            )  # fmt: skip
        result = RunResult(identity.name, "failed", error, plan.at)
        self._record(identity, state, result, now, error=error)
        return result

    def _record(
        self,
        identity: Identity,
        state: IdentityState,
        result: RunResult,
        now: dt.datetime,
        *,
        error: str | None = None,
        success: bool = False,
    ) -> None:
        state.last_attempt = _iso(now)
        state.last_result = "hook-failed" if result.hook_failed else result.action
        state.last_error = error
        state.failures = state.failures + 1 if result.action == "failed" else 0
        if result.action == "failed":
            state.failures_total += 1
        if identity.name in self._ca_not_after:
            state.ca_not_after = _iso(self._ca_not_after[identity.name])
        if success:
            state.last_success = _iso(now)
        state.next_attempt = _iso(result.next_at)
        state.next_action = {"pending": "poll", "failed": "retry"}.get(result.action, "renew")
        self._save_state(identity.name, state)

    def _expiry_event(self, identity: Identity, cert: x509.Certificate, now: dt.datetime) -> None:
        """expired, or expiring-soon when less than a tenth of the lifetime is left."""
        not_after, not_before = not_valid_after(cert), not_valid_before(cert)
        if not_after <= now:
            kind, text = "expired", f"the certificate expired {not_after:%Y-%m-%d %H:%M}Z"
        elif not_after - now < (not_after - not_before) / 10:
            kind, text = "expiring-soon", f"the certificate expires {not_after:%Y-%m-%d %H:%M}Z"
        else:
            return
        self._reporter.event(
            kind, text, identity=identity.name, server=identity.server.name,
            priority=failure_priority(not_after=not_after, not_before=not_before, now=now),
            serial=f"{cert.serial_number:X}", not_after=not_after,
        )  # fmt: skip

    def metrics(self) -> list[IdentityMetrics]:
        """One entry per configured identity, for the Prometheus textfile."""
        out = []
        for identity in self.config.identities.values():
            cert = self.current(identity)
            state = self.state(identity.name)
            next_renewal = _parse(state.next_attempt)
            if cert is not None and state.last_result not in ("failed", "pending"):
                next_renewal = self.due(identity, cert)
            out.append(
                IdentityMetrics(
                    identity=identity.name,
                    filepath=str(identity.cert),
                    serial=f"{cert.serial_number:X}" if cert else None,
                    subject_cn=_cn(cert.subject) if cert else None,
                    issuer_cn=_cn(cert.issuer) if cert else None,
                    not_before=not_valid_before(cert) if cert else None,
                    not_after=not_valid_after(cert) if cert else None,
                    last_success=_parse(state.last_success),
                    last_attempt=_parse(state.last_attempt),
                    failures_total=state.failures_total,
                    pending=self.pending_transaction(identity) is not None,
                    next_renewal=next_renewal,
                    ca_not_after=_parse(state.ca_not_after),
                )
            )
        return out

    def write_metrics(self) -> None:
        if self.config.metrics_file is not None:
            try:
                write_metrics(self.config.metrics_file, self.metrics(), now=self._clock())
            except ScepError as exc:
                log.warning("metrics: %s", exc)

    def identities(self, names: list[str] | None = None) -> Iterator[Identity]:
        if not names:
            yield from self.config.identities.values()
            return
        for name in names:
            if name not in self.config.identities:
                known = ", ".join(self.config.identities) or "none"
                raise UsageError(f"{self.config.path}: no identity {name!r} (configured: {known})")
            yield self.config.identities[name]


def _hook(command: Command, env: dict[str, str], timeout: float) -> HookResult:
    if isinstance(command, ShellCommand):  # the admin asked for a shell explicitly
        return run_hook(command.shell, shell=True, env=env, timeout=timeout, log=log)  # noqa: S604
    return run_hook(command, env=env, timeout=timeout, log=log)


def _is_ndes(server: Server, ca: CACertificates) -> bool:
    """Profile ndes, or auto and an RA certificate with Microsoft's Enrollment Agent EKU."""
    if server.profile != "auto":
        return server.profile == "ndes"
    for cert in ca.ra_certs:
        try:
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if any(u.dotted_string == MS_ENROLLMENT_AGENT for u in usages):
            return True
    return False


def _describe(command: Command) -> str:
    import shlex  # noqa: PLC0415 - only for messages

    return command.shell if isinstance(command, ShellCommand) else shlex.join(command)


def _before_expiry(
    name: str, when: dt.datetime, cert: x509.Certificate, now: dt.datetime
) -> dt.datetime:
    """Never schedule a renewal after the certificate expires without saying so."""
    not_after = not_valid_after(cert)
    latest = not_after - _spacing(cert)
    if when <= latest:
        return when
    log.error(
        "%s: the next renewal would come after the certificate expires (%s); trying at %s",
        name, f"{not_after:%Y-%m-%d %H:%M:%S}Z", f"{max(latest, now):%Y-%m-%d %H:%M:%S}Z",
    )  # fmt: skip
    return max(latest, now)


def _cn(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


def _spacing(cert: x509.Certificate) -> dt.timedelta:
    return policy.renewal_spacing(not_valid_before(cert), not_valid_after(cert))


def _parse(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None
