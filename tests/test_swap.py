"""store.swap_in / recover / identity_lock: a real process is SIGKILLed at every step boundary
of a swap (SCEPD_TEST_CRASH_AT), and recover() must leave a matching key and certificate that
are entirely the old ones (crash before the commit point) or entirely the new ones (after)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from conftest import REPO
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from scepd import store
from scepd.errors import CertificateMismatch, LocalFileError

KEY_MODE = 0o640  # not the defaults, so the test sees them applied
CERT_MODE = 0o664


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return store.key_pem(key)


def _issue(
    cn: str, key: rsa.RSAPrivateKey, ca: x509.Certificate | None, ca_key: rsa.RSAPrivateKey
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.subject if ca else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )


@dataclass(frozen=True)
class Pair:
    """One complete set of an identity's files."""

    key: bytes
    cert: bytes
    chain: bytes
    fullchain: bytes
    serial: int

    def new_files(self, *, keep_key: bool = False) -> store.NewFiles:
        return store.NewFiles(
            key_pem=None if keep_key else self.key,
            cert_pem=self.cert,
            chain_pem=self.chain,
            fullchain_pem=self.fullchain,
        )


@dataclass(frozen=True)
class Pki:
    old: Pair
    new: Pair
    reuse: Pair  # a new certificate for old's key


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _issue("Test CA", ca_key, None, ca_key)
    chain = ca.public_bytes(serialization.Encoding.PEM)

    def pair(key: rsa.RSAPrivateKey) -> Pair:
        cert = _issue("web01.example.com", key, ca, ca_key)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        return Pair(_pem_key(key), pem, chain, pem + chain, cert.serial_number)

    old_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Pki(old=pair(old_key), new=pair(new_key), reuse=pair(old_key))


@dataclass(frozen=True)
class Identity:
    state: Path  # identity_dir
    files: store.FileSet

    def on_disk(self) -> tuple[bytes, bytes, bytes, bytes]:
        f = self.files
        assert f.chain and f.fullchain
        return (f.key.read_bytes(), f.cert.read_bytes(), f.chain.read_bytes(),
                f.fullchain.read_bytes())  # fmt: skip


def _as(pair: Pair) -> tuple[bytes, bytes, bytes, bytes]:
    return pair.key, pair.cert, pair.chain, pair.fullchain


@pytest.fixture
def identity(tmp_path: Path, pki: Pki) -> Identity:
    etc = tmp_path / "etc"
    etc.mkdir()
    files = store.FileSet(
        key=etc / "web.key", cert=etc / "web.pem", chain=etc / "chain.pem",
        fullchain=etc / "fullchain.pem", key_mode=KEY_MODE, cert_mode=CERT_MODE,
    )  # fmt: skip
    for path, data, mode in ((files.key, pki.old.key, KEY_MODE),
                             (files.cert, pki.old.cert, CERT_MODE),
                             (files.chain, pki.old.chain, CERT_MODE),
                             (files.fullchain, pki.old.fullchain, CERT_MODE)):  # fmt: skip
        assert path is not None
        path.write_bytes(data)
        path.chmod(mode)
    return Identity(tmp_path / "state" / "web", files)


HELPER = """
import json, sys
from pathlib import Path
from scepd import store
cfg = json.loads(sys.argv[1])
f = cfg["files"]
files = store.FileSet(key=Path(f["key"]), cert=Path(f["cert"]), chain=Path(f["chain"]),
                      fullchain=Path(f["fullchain"]), key_mode=f["key_mode"],
                      cert_mode=f["cert_mode"])
new = store.NewFiles(**{k: Path(v).read_bytes() for k, v in cfg["new"].items()})
store.swap_in(Path(cfg["identity"]), files, new)
"""


def _python(*args: str) -> list[str]:
    return [sys.executable, *(["-s"] if sys.flags.no_user_site else []), *args]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != store.CRASH_ENV}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def _swap_in_subprocess(ident: Identity, pair: Pair, tmp: Path, crash_at: str | None) -> int:
    new = {}
    for field in ("key", "cert", "chain", "fullchain"):
        path = tmp / f"new-{field}.pem"
        path.write_bytes(getattr(pair, field))
        new[f"{field}_pem"] = str(path)
    f = ident.files
    cfg = {
        "identity": str(ident.state),
        "files": {"key": str(f.key), "cert": str(f.cert), "chain": str(f.chain),
                  "fullchain": str(f.fullchain), "key_mode": f.key_mode,
                  "cert_mode": f.cert_mode},
        "new": new,
    }  # fmt: skip
    env = _env(**({store.CRASH_ENV: crash_at} if crash_at else {}))
    out = subprocess.run(
        _python("-c", HELPER, json.dumps(cfg)), env=env, capture_output=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert out.returncode == (-signal.SIGKILL if crash_at else 0), out.stderr.decode()
    return out.returncode


def _assert_clean(ident: Identity) -> None:
    f = ident.files
    assert store.files_match(f)
    assert not list(f.key.parent.glob("*.tmp")), list(f.key.parent.iterdir())
    assert not (ident.state / "staged").exists()
    assert not (ident.state / "intent.json").exists()
    assert stat.S_IMODE(f.key.stat().st_mode) == KEY_MODE
    for path in (f.cert, f.chain, f.fullchain):
        assert path is not None
        assert stat.S_IMODE(path.stat().st_mode) == CERT_MODE


def _versions(ident: Identity) -> list[Path]:
    versions = ident.state / "versions"
    return sorted(versions.iterdir()) if versions.exists() else []


def test_crash_steps_are_the_documented_ones() -> None:
    assert store.SWAP_STEPS == ("staged", "intent", "renamed-key", "renamed-cert",
                                "renamed-chain", "renamed-fullchain", "archived",
                                "intent-removed")  # fmt: skip


@pytest.mark.parametrize("step", store.SWAP_STEPS)
def test_sigkill_at_each_step_then_recover(
    step: str, identity: Identity, pki: Pki, tmp_path: Path
) -> None:
    _swap_in_subprocess(identity, pki.new, tmp_path, crash_at=step)
    done = store.recover(identity.state, identity.files)
    assert done is not None  # every crash point leaves something to repair
    _assert_clean(identity)
    if step == "staged":  # before the commit point: rolled back, nothing archived
        assert identity.on_disk() == _as(pki.old), done
        assert "discarded" in done
        assert _versions(identity) == []
    else:
        assert identity.on_disk() == _as(pki.new), done
        [version] = _versions(identity)
        # The old files, as they were before the swap, even if the crash came after the key
        # had been replaced.
        assert version.name.endswith(f"-{pki.old.serial:X}")
        assert (version / "key.pem").read_bytes() == pki.old.key
        assert (version / "cert.pem").read_bytes() == pki.old.cert
        assert (version / "chain.pem").read_bytes() == pki.old.chain
        assert (version / "fullchain.pem").read_bytes() == pki.old.fullchain
    assert store.recover(identity.state, identity.files) is None


def test_swap_without_crash(identity: Identity, pki: Pki, tmp_path: Path) -> None:
    _swap_in_subprocess(identity, pki.new, tmp_path, crash_at=None)
    assert identity.on_disk() == _as(pki.new)
    _assert_clean(identity)
    assert stat.S_IMODE(identity.state.stat().st_mode) == 0o700
    assert store.recover(identity.state, identity.files) is None


def test_keeps_the_last_three_versions(identity: Identity, pki: Pki) -> None:
    sequence = [pki.new, pki.old, pki.new, pki.old, pki.new]
    for pair in sequence:
        store.swap_in(identity.state, identity.files, pair.new_files())
        assert identity.on_disk() == _as(pair)
    versions = _versions(identity)
    assert len(versions) == 3
    # Newest last: each holds what was on disk before the swap that made it.
    before = [pki.old, *sequence][:-1][-3:]
    for version, pair in zip(versions, before, strict=True):
        assert version.name.endswith(f"-{pair.serial:X}")
        assert (version / "cert.pem").read_bytes() == pair.cert
        assert (version / "key.pem").read_bytes() == pair.key
    _assert_clean(identity)


def test_reuse_key_leaves_the_key_byte_identical(identity: Identity, pki: Pki) -> None:
    before = identity.files.key.stat()
    store.swap_in(identity.state, identity.files, pki.reuse.new_files(keep_key=True))
    assert identity.files.key.read_bytes() == pki.old.key
    assert identity.files.key.stat().st_ino == before.st_ino  # not even rewritten
    assert identity.files.cert.read_bytes() == pki.reuse.cert
    _assert_clean(identity)
    [version] = _versions(identity)
    assert (version / "key.pem").read_bytes() == pki.old.key  # a version is a usable pair


def test_reuse_key_with_a_certificate_for_another_key_is_refused(
    identity: Identity, pki: Pki
) -> None:
    with pytest.raises(CertificateMismatch):
        store.swap_in(identity.state, identity.files, pki.new.new_files(keep_key=True))
    assert identity.on_disk() == _as(pki.old)


def test_failure_before_the_commit_point_leaves_targets_byte_identical(
    identity: Identity, pki: Pki, tmp_path: Path
) -> None:
    files = replace(identity.files, cert=tmp_path / "missing" / "web.pem")
    with pytest.raises(LocalFileError) as err:
        store.swap_in(identity.state, files, pki.new.new_files())
    assert str(files.cert) in str(err.value)
    assert err.value.exit_code == 7
    assert identity.on_disk() == _as(pki.old)
    assert not list(identity.files.key.parent.glob("*.tmp"))
    assert not (identity.state / "staged").exists()
    assert not (identity.state / "intent.json").exists()
    assert _versions(identity) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")
def test_owner_and_group_applied_as_root(identity: Identity, pki: Pki) -> None:
    files = replace(identity.files, owner="nobody", group="65534")
    store.swap_in(identity.state, files, pki.new.new_files())
    for path in (files.key, files.cert, files.chain, files.fullchain):
        assert path is not None
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534), path
    assert stat.S_IMODE(files.key.stat().st_mode) == KEY_MODE


def test_owner_change_needs_root(
    identity: Identity, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    with pytest.raises(LocalFileError, match="needs root"):
        store.swap_in(identity.state, replace(identity.files, owner="0"), pki.new.new_files())
    assert identity.on_disk() == _as(pki.old)
    with pytest.raises(LocalFileError, match="no such user"):
        store.swap_in(
            identity.state, replace(identity.files, owner="no-such-user-x"), pki.new.new_files()
        )
    # Asking for the owner we already are is no change: accepted silently.
    store.swap_in(identity.state, replace(identity.files, owner="4242"), pki.new.new_files())
    assert identity.on_disk() == _as(pki.new)


def test_recover_with_nothing_to_do_and_stray_temp_files(identity: Identity) -> None:
    assert store.recover(identity.state, identity.files) is None
    stray = identity.files.cert.parent / f".{identity.files.cert.name}.x1y2z3.tmp"
    stray.write_bytes(b"half a certificate")
    other = identity.files.cert.parent / ".unrelated.tmp"
    other.write_bytes(b"not ours")
    done = store.recover(identity.state, identity.files)
    assert done is not None and str(stray) in done
    assert not stray.exists() and other.exists()


def test_files_match(identity: Identity, pki: Pki) -> None:
    assert store.files_match(identity.files)
    identity.files.cert.write_bytes(pki.new.cert)
    assert not store.files_match(identity.files)
    identity.files.cert.write_bytes(b"garbage")
    assert not store.files_match(identity.files)
    identity.files.cert.unlink()
    assert not store.files_match(identity.files)


LOCK_HOLDER = """
import sys
from pathlib import Path
from scepd import store
with store.identity_lock(Path(sys.argv[1]), "web", holder="scepd run"):
    print("locked", flush=True)
    sys.stdin.read()  # until the test closes stdin, or kills us
"""


def _hold_lock(identity_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        _python("-c", LOCK_HOLDER, str(identity_dir)), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == "locked\n"
    return proc


def test_identity_lock_busy_names_the_holder(tmp_path: Path) -> None:
    identity_dir = tmp_path / "state" / "web"
    holder = _hold_lock(identity_dir)
    try:
        assert stat.S_IMODE(identity_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((identity_dir / "lock").stat().st_mode) == 0o600
        start = time.monotonic()
        with pytest.raises(store.IdentityLocked) as err, store.identity_lock(
            identity_dir, "web", wait=0.5
        ):
            pass
        assert time.monotonic() - start >= 0.5  # it waited before giving up
        message = str(err.value)
        assert message.startswith("identity web is busy: held by pid ")
        assert f"pid {holder.pid} (scepd run) since " in message
        assert message.endswith("; try again later")
        assert err.value.pid == holder.pid and err.value.exit_code == 7
        assert isinstance(err.value, LocalFileError)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    with store.identity_lock(identity_dir, "web", wait=0):
        pass  # released when the holder left its with-block


def test_identity_lock_waits_and_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    identity_dir = tmp_path / "web"
    holder = _hold_lock(identity_dir)
    killer = threading.Timer(0.3, holder.kill)
    killer.start()
    start = time.monotonic()
    try:
        with store.identity_lock(identity_dir, "web", wait=10, holder="test"):
            waited = time.monotonic() - start
            info = json.loads((identity_dir / "lock").read_text())
            assert info["pid"] == os.getpid() and info["holder"] == "test"
    finally:
        killer.cancel()
        holder.kill()
        holder.wait(10)
    assert 0.25 <= waited < 5


# The packaged unit's capability set: CAP_CHOWN only.  Drop the rest from the bounding set, so
# that root after exec() has exactly what scepd.service leaves it (see the unit's comments).
UNIT_CAPS_DROPPED = "-dac_override,-dac_read_search,-fowner"
SWAP_CHILD = """
import json, sys
from pathlib import Path
from scepd import store
from scepd.errors import ScepError
cfg = json.loads(sys.argv[1])
files = store.FileSet(key=Path(cfg["key"]), cert=Path(cfg["cert"]), owner=cfg["owner"],
                      group=cfg["group"], key_mode=0o640, cert_mode=0o644)
new = store.NewFiles(key_pem=cfg["key_pem"] and cfg["key_pem"].encode(),
                     cert_pem=cfg["cert_pem"].encode(), chain_pem=None, fullchain_pem=None)
try:
    store.swap_in(Path(cfg["state"]), files, new)
except ScepError as exc:
    print(exc)
    sys.exit(1)
"""


def _swap_with_unit_caps(
    tmp: Path, owner: str, group: str, pair: Pair, *, keep_key: bool
) -> subprocess.CompletedProcess[str]:
    cfg = {"key": str(tmp / "web.key"), "cert": str(tmp / "web.pem"), "owner": owner,
           "group": group, "state": str(tmp / "state"), "cert_pem": pair.cert.decode(),
           "key_pem": None if keep_key else pair.key.decode()}  # fmt: skip
    return subprocess.run(
        ["setpriv", f"--bounding-set={UNIT_CAPS_DROPPED}", "--", sys.executable, "-c",
         SWAP_CHILD, json.dumps(cfg)],
        check=False, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


needs_setpriv_root = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(),
    reason="needs root and setpriv (util-linux) to drop capabilities",
)


@needs_setpriv_root
def test_unit_capabilities_suffice_for_configured_owner(tmp_path: Path, pki: Pki) -> None:
    """With CAP_CHOWN alone the new files get mode, owner and group (mode set before fchown:
    chmod of a file root no longer owns would need CAP_FOWNER), and a renewal that keeps the
    key reads it through the group when it is root-owned and group-readable."""
    first = _swap_with_unit_caps(tmp_path, "nobody", "0", pki.old, keep_key=False)
    assert first.returncode == 0, first.stdout + first.stderr
    st = (tmp_path / "web.key").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 0, 0o640)
    renewal = _swap_with_unit_caps(tmp_path, "nobody", "0", pki.reuse, keep_key=True)
    assert renewal.returncode == 0, renewal.stdout + renewal.stderr
    assert (tmp_path / "web.pem").read_bytes() == pki.reuse.cert


@needs_setpriv_root
def test_unit_capabilities_refuse_another_users_private_key_clearly(
    tmp_path: Path, pki: Pki
) -> None:
    """A key only another user could read would lock scepd out of it at the next renewal
    (and the swap itself reads the staged files back): refused before anything is written,
    in one line naming the file and the drop-in, every file left as it was."""
    first = _swap_with_unit_caps(tmp_path, "nobody", "0", pki.old, keep_key=False)
    assert first.returncode == 0, first.stdout + first.stderr
    before = {p.name: p.read_bytes() for p in tmp_path.glob("web.*")}
    renewal = _swap_with_unit_caps(tmp_path, "nobody", "nogroup", pki.reuse, keep_key=True)
    assert renewal.returncode == 1, renewal.stdout + renewal.stderr
    (line,) = renewal.stdout.splitlines()
    assert line == (
        f"{tmp_path / 'web.key'}: owner nobody, group nogroup and key_mode 0640 would lock "
        "scepd out of its own file; root without CAP_DAC_OVERRIDE, as in scepd.service, is "
        "bound by file modes: make it root-owned or group-readable, or install "
        "scepd.service.d/other-owners.conf"
    )
    assert {p.name: p.read_bytes() for p in tmp_path.glob("web.*")} == before
    assert not (tmp_path / "state" / "intent.json").exists()


@needs_setpriv_root
def test_unit_capabilities_name_the_fix_when_a_key_is_unreadable(tmp_path: Path, pki: Pki) -> None:
    """A key made unreadable by hand (another user's, 0600): reading it fails in one line
    that says why root was refused and what to do."""
    key = tmp_path / "web.key"
    key.write_bytes(pki.old.key)
    os.chown(key, 65534, 65534)
    key.chmod(0o600)
    child = (
        "import sys\nfrom pathlib import Path\nfrom scepd import store\n"
        "from scepd.errors import ScepError\n"
        "try:\n    store.load_key(Path(sys.argv[1]))\n"
        "except ScepError as exc:\n    print(exc)\n    sys.exit(1)\n"
    )
    result = subprocess.run(
        ["setpriv", f"--bounding-set={UNIT_CAPS_DROPPED}", "--", sys.executable, "-c", child,
         str(key)],
        check=False, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == (
        f"{key}: cannot read key (Permission denied; root without CAP_DAC_OVERRIDE, as in "
        "scepd.service, is bound by file modes: make it root-owned or group-readable, or "
        "install scepd.service.d/other-owners.conf)\n"
    )
