"""The only place scepd writes key material and certificates.

Every write is atomic (temporary file in the same directory, fsync, rename, fsync of the
directory), so a crash or a full disk never leaves a half-written key or certificate and an
existing file stays byte-identical until its replacement is complete."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scepd.errors import LocalFileError, UsageError
from scepd.protocol.keys import SoftwareKey

KEY_MODE = 0o600
CERT_MODE = 0o644
MIN_KEY_BITS = 2048


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


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
    import shutil  # noqa: PLC0415 - only when a transaction closes

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
