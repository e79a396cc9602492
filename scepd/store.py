"""The only place scepd writes key material and certificates.

Every write is atomic (temporary file in the same directory, fsync, rename, fsync of the
directory), so a crash or a full disk never leaves a half-written key or certificate and an
existing file stays byte-identical until its replacement is complete."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import grp
import hashlib
import json
import os
import pwd
import shutil
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scepd.errors import CertificateMismatch, LocalFileError, MalformedMessage, UsageError
from scepd.protocol.keys import SoftwareKey

KEY_MODE = 0o600
CERT_MODE = 0o644
MIN_KEY_BITS = 2048


# What to do when root is bound by file modes (scepd.service drops CAP_DAC_OVERRIDE).
_BOUND_BY_MODES = (
    "root without CAP_DAC_OVERRIDE, as in scepd.service, is bound by file modes: make it "
    "root-owned or group-readable, or install scepd.service.d/other-owners.conf"
)


def _why(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    if isinstance(exc, PermissionError) and os.geteuid() == 0 and not _overrides_file_modes():
        text += f"; {_BOUND_BY_MODES}"
    return text


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` in one rename; the file has ``mode`` from its creation."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise LocalFileError(f"{path}: cannot create a file in {directory} ({_why(exc)})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise LocalFileError(f"{path}: cannot write ({_why(exc)})") from None
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(path: Path) -> None:
    """Fail before talking to the CA (and spending a one-time password) if ``path`` cannot be
    written."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise LocalFileError(f"{path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise LocalFileError(f"{path}: directory {directory} is not writable")
    if path.exists() and not path.is_file():
        raise LocalFileError(f"{path}: exists and is not a regular file")


def load_key(path: Path) -> SoftwareKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LocalFileError(f"{path}: cannot read key ({_why(exc)})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise LocalFileError(
            f"{path}: not an unencrypted PEM private key ({str(exc).splitlines()[0]})"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise LocalFileError(f"{path}: SCEP needs an RSA key, this is {type(key).__name__}")
    return SoftwareKey(key)


def key_modulus(path: Path) -> int | None:
    """The RSA modulus of an unencrypted PEM key, read without validating the key.

    Enough to tell whether a key file belongs to a certificate, in well under a millisecond:
    cryptography's loader checks the primes (about 35 ms for RSA-2048), which made a daemon
    with 1,000 identities take 40 s for its first round of "not due yet".  None when the file
    is not a readable RSA key (the full loader then says why)."""
    from asn1crypto import keys as asn1_keys  # noqa: PLC0415
    from asn1crypto import pem as asn1_pem  # noqa: PLC0415

    try:
        _kind, _headers, der = asn1_pem.unarmor(path.read_bytes())
        try:
            info = asn1_keys.PrivateKeyInfo.load(der)
            if info["private_key_algorithm"]["algorithm"].native != "rsa":
                return None
            rsa_key = info["private_key"].parsed
        except ValueError:
            rsa_key = asn1_keys.RSAPrivateKey.load(der)
        modulus: int = rsa_key["modulus"].native
        return modulus
    except (OSError, ValueError, KeyError, TypeError):
        return None


class KeyGeneration:
    """A new RSA key generated on another core while the CA is contacted.

    OpenSSL releases the GIL while it searches for primes, so generation overlaps the imports
    and HTTP round trips of an enrollment instead of adding to them.  Nothing is written until
    :func:`save_new_key`."""

    def __init__(self, bits: int) -> None:
        if bits < MIN_KEY_BITS:
            raise UsageError(f"--key-size {bits}: RSA keys must have at least {MIN_KEY_BITS} bits")
        self._key: rsa.RSAPrivateKey | None = None
        self._error: BaseException | None = None
        # Not a daemon: exiting while OpenSSL is still in the thread crashes the interpreter
        # (SIGSEGV seen with Debian's cryptography 38), so an early error waits for it.
        self._thread = threading.Thread(target=self._run, args=(bits,), daemon=False)
        self._thread.start()

    def _run(self, bits: int) -> None:
        try:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        except BaseException as exc:  # re-raised in result(), on the caller's thread
            self._error = exc

    def result(self) -> rsa.RSAPrivateKey:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._key is not None
        return self._key


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def save_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    """A private key, mode 0600, written atomically."""
    write_atomic(path, key_pem(key), KEY_MODE)


def load_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LocalFileError(f"{path}: cannot read certificate ({_why(exc)})") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise LocalFileError(
            f"{path}: not a PEM or DER certificate ({str(exc).splitlines()[0]})"
        ) from None


def _mode_and_owner(path: Path, default_mode: int) -> tuple[int, tuple[int, int] | None]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return default_mode, None
    return stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)


def replace_together(files: list[tuple[Path, bytes, int]]) -> None:
    """Replace several files (key, certificate, chain) as close to at once as a POSIX file
    system allows: every new file is fully written and synced first, then all are renamed.
    An existing file keeps its mode and, when we may set it, its owner and group.  If
    anything fails before the renames, every old file is still byte-identical."""
    staged: list[tuple[str, Path]] = []
    current = files[0][0] if files else Path(".")
    try:
        for path, data, default_mode in files:
            current = path
            mode, owner = _mode_and_owner(path, default_mode)
            directory = path.parent if str(path.parent) else Path(".")
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), mode)
                if owner is not None and os.geteuid() == 0:
                    os.fchown(handle.fileno(), *owner)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
    except OSError as exc:
        for tmp, _path in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise LocalFileError(f"{current}: cannot write ({_why(exc)})") from None
    for tmp, path in staged:
        os.replace(tmp, path)
    for directory in {path.parent for _tmp, path in staged}:
        _fsync_dir(directory if str(directory) else Path("."))


def remove_tree(directory: Path) -> None:
    """Remove a state directory (a closed transaction) and the key it held."""
    shutil.rmtree(directory, ignore_errors=True)


def certificates_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def write_certificates(path: Path, certs: Iterable[x509.Certificate]) -> None:
    """PEM certificates; an existing file keeps its permission bits."""
    mode = CERT_MODE
    with contextlib.suppress(FileNotFoundError):
        mode = stat.S_IMODE(path.stat().st_mode)
    write_atomic(path, certificates_pem(certs), mode)


def read_secret(path: Path) -> str:
    """A challenge password from a file: first line, surrounding whitespace removed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LocalFileError(f"{path}: cannot read challenge file ({_why(exc)})") from None
    except UnicodeDecodeError:
        raise LocalFileError(f"{path}: challenge file is not UTF-8 text") from None
    lines = text.splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise UsageError(f"{path}: challenge file is empty")
    return secret


# --- journaled swap of an identity's files -----------------------------------------------------
#
# identity_dir/
#   lock          flock of identity_lock(); holds who has it (JSON)
#   staged/       the new files (final mode/owner) and old/, a copy of the files they replace
#   intent.json   the commit point: once it exists the swap is completed, never undone
#   versions/     the last KEEP_VERSIONS sets of replaced files, <UTC timestamp>-<serial>/

KEEP_VERSIONS = 3
# Test seam: with SCEPD_TEST_CRASH_AT=<step> (one of SWAP_STEPS) the process SIGKILLs itself at
# that step boundary of a swap, so tests can prove recover() copes with a crash anywhere.
CRASH_ENV = "SCEPD_TEST_CRASH_AT"
SWAP_STEPS = (
    "staged", "intent", "renamed-key", "renamed-cert", "renamed-chain", "renamed-fullchain",
    "archived", "intent-removed",
)  # fmt: skip
_INTENT = "intent.json"
_STAGED = "staged"
_OLD = "old"
_VERSIONS = "versions"
_LOCK = "lock"


def _crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class FileSet:
    """Where an identity's files live and how they must look on disk."""

    key: Path
    cert: Path
    chain: Path | None = None
    fullchain: Path | None = None
    owner: str | None = None  # user name or numeric uid; None = as the process creates it
    group: str | None = None
    key_mode: int = 0o600
    cert_mode: int = 0o644  # cert, chain and fullchain


@dataclass(frozen=True)
class NewFiles:
    """The replacement contents.  A file is replaced only when both its FileSet path and its
    data here are set: a None path ignores the data, None data leaves the file as it is."""

    key_pem: bytes | None  # None: the key is kept (reuse-key); only cert/chain/fullchain change
    cert_pem: bytes
    chain_pem: bytes | None
    fullchain_pem: bytes | None


class IdentityLocked(LocalFileError):
    """Another process holds the identity's lock (a renewal or an operator's command)."""

    def __init__(
        self, name: str, *, pid: int | None, holder: str | None, since: float | None
    ) -> None:
        self.pid, self.holder, self.since = pid, holder, since
        if pid is None:
            who = "held by another process"
        else:
            who = f"held by pid {pid}" + (f" ({holder})" if holder else "")
            if since is not None:
                when = time.localtime(since)
                fmt = "%H:%M:%S" if when[:3] == time.localtime()[:3] else "%Y-%m-%d %H:%M:%S"
                who += f" since {time.strftime(fmt, when)}"
        super().__init__(f"identity {name} is busy: {who}; try again later")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _abs(path: Path) -> Path:
    # abspath, not resolve(): a symlinked target is replaced as the link's own path would be.
    return Path(os.path.abspath(path))


def _key_spki(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _cert(data: bytes) -> x509.Certificate:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _cert_spki(data: bytes) -> bytes:
    return (
        _cert(data)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


_PARSE_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)


def files_match(files: FileSet) -> bool:
    """True when the key file's public key equals the certificate file's (both exist and
    parse)."""
    try:
        return _key_spki(files.key.read_bytes()) == _cert_spki(files.cert.read_bytes())
    except (OSError, *_PARSE_ERRORS):
        return False


def _resolve_ids(files: FileSet) -> tuple[int | None, int | None]:
    """(uid, gid) to give the files; LocalFileError when unknown or not ours to give."""
    uid = gid = None
    if files.owner is not None:
        try:
            uid = int(files.owner) if files.owner.isdigit() else pwd.getpwnam(files.owner).pw_uid
        except KeyError:
            raise LocalFileError(f"{files.key}: owner {files.owner!r}: no such user") from None
    if files.group is not None:
        try:
            gid = int(files.group) if files.group.isdigit() else grp.getgrnam(files.group).gr_gid
        except KeyError:
            raise LocalFileError(f"{files.key}: group {files.group!r}: no such group") from None
    if os.geteuid() != 0:
        if uid is not None and uid != os.geteuid():
            raise LocalFileError(
                f"{files.key}: owner {files.owner!r} requested, but changing a file's owner "
                f"needs root (scepd runs as uid {os.geteuid()})"
            )
        if gid is not None and gid != os.getegid() and gid not in os.getgroups():
            raise LocalFileError(
                f"{files.key}: group {files.group!r} requested, but giving a file a group we "
                "are not a member of needs root"
            )
    elif not _overrides_file_modes():
        for what, mode in (("key_mode", files.key_mode), ("cert_mode", files.cert_mode)):
            if not _root_can_read(mode, uid, gid):
                raise LocalFileError(
                    f"{files.key}: owner {files.owner or 'root'}, group {files.group or 'root'}"
                    f" and {what} {mode:04o} would lock scepd out of its own file; "
                    f"{_BOUND_BY_MODES}"
                )
    return uid, gid


def _overrides_file_modes() -> bool:
    """Whether root here may read any file (CAP_DAC_OVERRIDE or CAP_DAC_READ_SEARCH)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return True  # cannot tell: let the kernel decide, the swap still fails cleanly
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & 0b110)  # bits 1 and 2
    return True


def _root_can_read(mode: int, uid: int | None, gid: int | None) -> bool:
    """What the kernel decides for uid 0 bound by file modes: owner, else group, else other."""
    if uid in (None, 0):
        return bool(mode & 0o400)
    if gid in (None, 0) or gid in os.getgroups():
        return bool(mode & 0o040)
    return bool(mode & 0o004)


def _apply(fd: int, mode: int, uid: int | None, gid: int | None) -> None:
    # The mode first, while the file is still ours: chmod of another user's file would need
    # CAP_FOWNER, which scepd.service does not grant (key modes have no setuid/setgid bits
    # for the fchown below to clear).
    os.fchmod(fd, mode)
    if os.geteuid() == 0:
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
    elif gid is not None and os.fstat(fd).st_gid != gid:
        os.fchown(fd, -1, gid)  # a group we are a member of (_resolve_ids checked)


def _write_fd(fd: int, data: bytes, mode: int, uid: int | None, gid: int | None) -> None:
    with os.fdopen(fd, "wb") as handle:
        _apply(handle.fileno(), mode, uid, gid)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_new(path: Path, data: bytes, mode: int, uid: int | None, gid: int | None) -> None:
    _write_fd(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), data, mode, uid, gid)


def _temp_next_to(target: Path, data: bytes, mode: int, uid: int | None, gid: int | None) -> Path:
    """A complete, synced copy of ``data`` in the target's directory, ready to be renamed."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        _write_fd(fd, data, mode, uid, gid)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def _make_private_dir(path: Path) -> None:
    """A 0700 directory (parents as the umask makes them); an existing one is left alone."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        if not path.is_dir():
            raise LocalFileError(f"{path}: exists and is not a directory") from None
    except OSError as exc:
        raise LocalFileError(f"{path}: cannot create directory ({_why(exc)})") from None
    else:
        os.chmod(path, 0o700)  # mkdir's mode went through the umask


def _check_pair(files: FileSet, new: NewFiles) -> None:
    """The invariant every swap keeps: the key on disk is the certificate's key."""
    try:
        cert_spki = _cert_spki(new.cert_pem)
    except _PARSE_ERRORS:
        raise MalformedMessage(f"{files.cert}: the new certificate does not parse") from None
    if new.key_pem is None:
        try:
            key_spki = _key_spki(files.key.read_bytes())
        except OSError as exc:
            raise LocalFileError(f"{files.key}: cannot read key ({_why(exc)})") from None
        except _PARSE_ERRORS:
            raise LocalFileError(f"{files.key}: not an unencrypted PEM private key") from None
        if key_spki != cert_spki:
            raise CertificateMismatch(f"{files.cert}: the new certificate is not for {files.key}")
    else:
        try:
            key_spki = _key_spki(new.key_pem)
        except _PARSE_ERRORS:
            raise LocalFileError(f"{files.key}: the new key does not parse") from None
        if key_spki != cert_spki:
            raise CertificateMismatch(f"{files.cert}: the new certificate is not for the new key")


def _archive_name(old_cert: bytes | None) -> str:
    # Microseconds: several swaps in one second must still sort in order for pruning.
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    if old_cert is not None:
        with contextlib.suppress(*_PARSE_ERRORS):
            return f"{stamp}-{_cert(old_cert).serial_number:X}"
    return f"{stamp}-0"


def swap_in(identity_dir: Path, files: FileSet, new: NewFiles) -> None:
    """Replace an identity's key, certificate, chain and fullchain as one journaled change.

    (1) stage every new file in identity_dir/staged/ (with a copy of the files it replaces)
    and a synced temporary file next to each target; (2) write identity_dir/intent.json
    atomically: the commit point; (3) rename each temporary file over its target, fsync the
    target directories; (4) archive the old files in versions/<UTC timestamp>-<old serial>/,
    keeping the last KEEP_VERSIONS; (5) remove intent.json and staged/.  Everything that can
    fail for lack of space or permission happens before the commit point, where a failure
    raises LocalFileError naming the file and leaves every target byte-identical.  A crash
    anywhere is repaired by :func:`recover`.  Call under :func:`identity_lock`."""
    identity_dir = _abs(identity_dir)
    uid, gid = _resolve_ids(files)
    _check_pair(files, new)
    wanted = [
        ("key", files.key, new.key_pem, files.key_mode),
        ("cert", files.cert, new.cert_pem, files.cert_mode),
        ("chain", files.chain, new.chain_pem, files.cert_mode),
        ("fullchain", files.fullchain, new.fullchain_pem, files.cert_mode),
    ]
    targets = [(r, _abs(p), d, m) for r, p, d, m in wanted if p is not None and d is not None]
    if len({p for _r, p, _d, _m in targets}) != len(targets):
        raise UsageError(f"{files.cert}: key, cert, chain and fullchain must be different files")
    _make_private_dir(identity_dir)
    recover(identity_dir, files)  # an earlier swap stopped by an error is finished first

    staged = identity_dir / _STAGED
    temps: list[Path] = []
    current = staged
    try:
        _make_private_dir(staged)
        old_dir = staged / _OLD
        _make_private_dir(old_dir)
        old_cert = None
        for role, path in (("key", files.key), ("cert", files.cert), ("chain", files.chain),
                           ("fullchain", files.fullchain)):  # fmt: skip
            if path is None:
                continue
            current = path
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise LocalFileError(f"{path}: cannot read ({_why(exc)})") from None
            if role == "cert":
                old_cert = data
            _write_new(old_dir / f"{role}.pem", data, 0o600, None, None)
        _fsync_dir(old_dir)
        entries: list[dict[str, Any]] = []
        for role, path, data, mode in targets:
            current = path
            _write_new(staged / f"{role}.pem", data, mode, uid, gid)
            temps.append(_temp_next_to(path, data, mode, uid, gid))
            entries.append({
                "role": role, "target": str(path), "staged": f"{role}.pem",
                "temp": str(temps[-1]), "sha256": _sha256(data), "mode": mode,
                "uid": uid, "gid": gid,
            })  # fmt: skip
        _fsync_dir(staged)
        _fsync_dir(identity_dir)
        _crash_point("staged")
        current = identity_dir / _INTENT
        intent = {"version": 1, "archive": _archive_name(old_cert), "files": entries}
        _commit(identity_dir / _INTENT, (json.dumps(intent, indent=1) + "\n").encode())
    except BaseException as exc:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        shutil.rmtree(staged, ignore_errors=True)
        if isinstance(exc, OSError):
            raise LocalFileError(f"{current}: cannot write ({_why(exc)})") from None
        raise
    _crash_point("intent")
    _complete(identity_dir, intent)


def _commit(path: Path, data: bytes) -> None:
    """write_atomic, except that once the rename has happened nothing raises: the intent is
    committed and the swap must go on."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _write_fd(fd, data, 0o600, None, None)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        _fsync_dir(path.parent)


def _is_installed(target: Path, entry: dict[str, Any]) -> bool:
    try:
        st = target.stat()
        data = target.read_bytes()
    except OSError:
        return False
    return (
        _sha256(data) == entry["sha256"]
        and stat.S_IMODE(st.st_mode) == entry["mode"]
        and entry["uid"] in (None, st.st_uid)
        and entry["gid"] in (None, st.st_gid)
    )


def _complete(identity_dir: Path, intent: dict[str, Any]) -> int:
    """Steps 3-5 of a committed swap, idempotent: run again after a crash, it picks up where
    the last run stopped.  Returns how many targets it replaced."""
    staged = identity_dir / _STAGED
    replaced = 0
    for entry in intent["files"]:
        target = Path(entry["target"])
        if _is_installed(target, entry):  # done before a crash, or unchanged (same chain)
            with contextlib.suppress(OSError):
                Path(entry["temp"]).unlink()
            _crash_point(f"renamed-{entry['role']}")
            continue
        temp = Path(entry["temp"])
        try:
            ready = temp.exists() and _sha256(temp.read_bytes()) == entry["sha256"]
            if not ready:  # the process that made it died before renaming it: make it again
                data = (staged / entry["staged"]).read_bytes()
                if _sha256(data) != entry["sha256"]:
                    raise LocalFileError(
                        f"{staged / entry['staged']}: staged copy is damaged; cannot complete "
                        f"the swap of {target} (the old files are in {staged / _OLD})"
                    )
                temp = _temp_next_to(target, data, entry["mode"], entry["uid"], entry["gid"])
            os.replace(temp, target)
        except OSError as exc:
            raise LocalFileError(
                f"{target}: cannot replace ({_why(exc)}); the swap is committed in "
                f"{identity_dir / _INTENT} and is completed by the next recovery"
            ) from None
        replaced += 1
        _crash_point(f"renamed-{entry['role']}")
    for directory in {Path(e["target"]).parent for e in intent["files"]}:
        _fsync_dir(directory)

    old_dir = staged / _OLD
    if old_dir.is_dir():
        if any(old_dir.iterdir()):
            versions = identity_dir / _VERSIONS
            _make_private_dir(versions)
            name = base = str(intent["archive"])
            n = 1
            while (versions / name).exists():
                n += 1
                name = f"{base}-{n}"
            os.replace(old_dir, versions / name)  # same file system: one atomic rename
            _fsync_dir(versions)
            _prune(versions, keep=name)
        else:
            old_dir.rmdir()
    _crash_point("archived")

    with contextlib.suppress(FileNotFoundError):
        (identity_dir / _INTENT).unlink()
    _fsync_dir(identity_dir)
    _crash_point("intent-removed")
    shutil.rmtree(staged, ignore_errors=True)
    return replaced


def _prune(versions: Path, *, keep: str) -> None:
    """Keep the newest KEEP_VERSIONS by name (UTC timestamps sort), always the one just made
    (even if the clock went back)."""
    names = sorted(p.name for p in versions.iterdir() if p.is_dir() and p.name != keep)
    for name in names[: max(0, len(names) - (KEEP_VERSIONS - 1))]:
        shutil.rmtree(versions / name, ignore_errors=True)


def _remove_strays(files: FileSet, extra: Iterable[Path] = ()) -> list[Path]:
    removed = []
    paths = {_abs(p) for p in (files.key, files.cert, files.chain, files.fullchain) if p}
    for path in paths | {_abs(p) for p in extra}:
        with contextlib.suppress(OSError):
            for stray in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    stray.unlink()
                    removed.append(stray)
    return removed


def recover(identity_dir: Path, files: FileSet) -> str | None:
    """Repair what an interrupted swap_in left, at start-up (under :func:`identity_lock`).

    With intent.json the swap is rolled forward (steps 3-5 again, idempotently, from
    staged/); without it staged/ is discarded, which leaves the targets as they were.  Stray
    temporary files next to the targets (".<name>.*.tmp") are removed.  Returns a one-line
    description of what was done, or None when there was nothing to do."""
    identity_dir = _abs(identity_dir)
    intent_path = identity_dir / _INTENT
    staged = identity_dir / _STAGED
    done: list[str] = []
    targets: list[Path] = []
    if intent_path.exists():
        try:
            intent = json.loads(intent_path.read_text(encoding="utf-8"))
            targets = [Path(e["target"]) for e in intent["files"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LocalFileError(
                f"{intent_path}: unreadable journal of an interrupted swap ({exc}); the old "
                f"files are in {staged / _OLD}"
            ) from None
        replaced = _complete(identity_dir, intent)
        done.append(
            f"rolled forward an interrupted swap in {identity_dir} (replaced {replaced} of "
            f"{len(targets)} files, the others were already in place)"
        )
    elif staged.exists():
        shutil.rmtree(staged, ignore_errors=True)
        done.append(
            f"discarded staged files of an unfinished swap in {identity_dir} (no intent.json: "
            "the targets are left as they are)"
        )
    strays = _remove_strays(files, targets)
    if strays:
        done.append(f"removed stray temporary files {', '.join(map(str, sorted(strays)))}")
    return "; ".join(done) or None


@contextlib.contextmanager
def identity_lock(
    identity_dir: Path, name: str, *, wait: float = 10.0, holder: str = "scepd"
) -> Iterator[None]:
    """Hold flock(LOCK_EX) on identity_dir/lock (0600; identity_dir made 0700 if missing).

    Waits up to ``wait`` seconds, then raises IdentityLocked naming the holder (pid, holder
    text and since when, which the holder writes into the lock file).  Not re-entrant: a
    second identity_lock on the same identity in one process waits for the first.  The
    descriptor is close-on-exec, so a hook's long-lived children do not keep the lock."""
    _make_private_dir(identity_dir)
    path = identity_dir / _LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise LocalFileError(f"{path}: cannot open lock file ({_why(exc)})") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise IdentityLocked(name, **_lock_holder(fd)) from None
                time.sleep(min(0.05, left))
            except OSError as exc:
                raise LocalFileError(f"{path}: cannot lock ({_why(exc)})") from None
        info = {"pid": os.getpid(), "holder": holder, "since": time.time()}
        with contextlib.suppress(OSError):  # only informative
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _lock_holder(fd: int) -> dict[str, Any]:
    try:
        info = json.loads(os.pread(fd, 4096, 0))
        return {
            "pid": int(info["pid"]),
            "holder": str(info["holder"]),
            "since": float(info["since"]),
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {"pid": None, "holder": None, "since": None}  # mid-write, or an old scepd
