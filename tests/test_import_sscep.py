"""scepd import-sscep: an sscep.conf + mkrequest setup becomes servers: + identities: YAML that
parse_config accepts; the challenge never appears; what cannot be mapped is a comment."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from scepd.cli import _run
from scepd.config import Config, parse_config
from scepd.errors import EXIT_FILE, EXIT_USAGE, LocalFileError, ScepError, UsageError
from scepd.sscep_import import convert, default_name

DATA = REPO / "tests" / "data" / "sscep"
SECRET = "Sup3r-Secret-OTP-4711"  # the challenge in mkrequest.custom


def validate(text: str) -> Config:
    return parse_config("state_dir: /var/lib/scepd\n" + text, Path("config.yaml"))


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def shipped(name: str = "web01", conf_dir: Path = DATA) -> str:
    conf = (DATA / "sscep.cnf").read_text()
    return convert(conf, (DATA / "mkrequest").read_text(), name=name, conf_dir=conf_dir)


def custom() -> str:
    conf = (DATA / "sscep-mail.cnf").read_text()
    return convert(conf, (DATA / "mkrequest.custom").read_text(), name="mail01", conf_dir=DATA)


def exit_code(args: argparse.Namespace) -> tuple[int, str]:
    """What scepd.cli.main does with the handler's error: its exit code and one-line message."""
    try:
        return _run(args), ""
    except ScepError as exc:
        return exc.exit_code, str(exc)


def namespace(
    conf: Path, mkrequest: Path | None = None, name: str | None = None
) -> argparse.Namespace:
    return argparse.Namespace(
        handler="scepd.commands.import_sscep:run", conf=conf, mkrequest=mkrequest, name=name
    )


# --- sscep's shipped-style files ---------------------------------------------------------------


def test_shipped_style_setup_validates_with_the_expected_keys() -> None:
    text = shipped()
    config = validate(text)
    server = config.servers["web01"]
    assert server.urls == ("http://ndes.example.com/certsrv/mscep/mscep.dll/pkiclient.exe",)
    assert server.ca_identifier == "Example Issuing CA"
    assert server.ca_fingerprint is None  # ca.crt is not on disk
    identity = config.identities["web01"]
    assert identity.server is server
    assert identity.key == Path("/etc/ssl/private/web01.key")
    assert identity.cert == Path("/etc/ssl/certs/web01.crt")
    assert identity.key_bits == 2048  # KEYBITS=1024 raised to scepd's minimum
    assert identity.challenge is not None
    assert identity.challenge.file == Path("/etc/scepd/web01.otp")
    # the DN fields of the script, RFC 4514 (most specific first); the CN is its argument
    assert identity.subject.endswith(",OU=Web,O=Example GmbH,L=Berlin,C=DE")
    assert "ST=" not in identity.subject  # STATE= is empty


def test_shipped_style_comments() -> None:
    text = shipped()
    notes = comments(text)
    assert "# sscep: KEYBITS = 1024: raised to 2048 (scepd's minimum; NDES and most CAs refuse " \
        "smaller RSA keys)" in notes  # fmt: skip
    assert "# write the one-time password to this file; scepd never reads it from" in notes
    assert any(
        "scepd getca --url http://ndes.example.com/" in n and "--out DIR" in n for n in notes
    )
    assert any(
        n.startswith("# sscep: EncAlgorithm = des: not mapped (scepd negotiates") for n in notes
    )
    assert any(n.startswith("# sscep: SigAlgorithm = md5: not mapped (") for n in notes)
    assert any("CHANGE the CN" in n and "-dns/-ip argument" in n for n in notes)
    unmapped = [
        ("Verbose", "true"), ("CertReqFile", "web01.csr"), ("PollInterval", "60"),
        ("MaxPollTime", "28800"), ("MaxPollCount", "256"), ("Resume", "true"),
        ("SignCertFile", "/etc/ssl/certs/web01.crt"), ("FingerPrint", "md5"),
    ]  # fmt: skip
    for key, value in unmapped:
        assert any(n.startswith(f"# sscep: {key} = {value}: not mapped (") and n.endswith(")")
                   for n in notes), key  # fmt: skip
    # a password-like key is listed, its value is not
    assert (
        "# sscep: KeyStorePass = (value not shown): not mapped (scepd has no such setting)" in notes
    )
    assert "hunter2" not in text
    # Debug = false is the default: not written
    assert "debug:" not in text


def test_the_cn_and_san_come_from_the_request_on_disk(tmp_path: Path) -> None:
    for name in ("sscep.cnf", "mkrequest"):
        shutil.copy(DATA / name, tmp_path / name)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example GmbH"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "web01.example.com"),
                ]
            )
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("web01.example.com")]), False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "web01.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    conf, mkrequest = (tmp_path / "sscep.cnf").read_text(), (tmp_path / "mkrequest").read_text()
    assert default_name(conf, mkrequest, conf_dir=tmp_path) == "web01"
    text = convert(conf, mkrequest, name="web01", conf_dir=tmp_path)
    identity = validate(text).identities["web01"]
    assert identity.subject == "CN=web01.example.com,O=Example GmbH,C=DE"
    assert identity.san_dns == ("web01.example.com",)
    assert f"# sscep: subject and san: read from {tmp_path / 'web01.csr'}" in comments(text)


def test_the_fingerprint_of_the_ca_file_on_disk(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Issuing CA")])
    now = dt.datetime.now(dt.UTC)
    certs = [
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(serial).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
        for serial in (1, 2)
    ]  # fmt: skip
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    (tmp_path / "ca.crt-0").write_bytes(pem)  # sscep getca -c ca.crt wrote ca.crt-0, ca.crt-1
    conf = (DATA / "sscep.cnf").read_text()
    text = convert(conf, None, name="web", conf_dir=tmp_path)
    expected = "sha256:" + certs[0].fingerprint(hashes.SHA256()).hex().upper()
    assert f"    ca_fingerprint: {expected}\n" in text
    server = validate(text).servers["web"]
    assert server.ca_fingerprint is not None
    assert certs[0].fingerprint(hashes.SHA256()).hex() in server.ca_fingerprint.lower().replace(
        ":", ""
    )


def test_without_mkrequest_the_challenge_is_a_commented_line() -> None:
    text = convert((DATA / "sscep.cnf").read_text(), None, name="web", conf_dir=DATA)
    config = validate(text)
    assert config.identities["web"].challenge is None
    assert "    # challenge: {file: /etc/scepd/web.otp}\n" in text
    assert "key_bits" not in text


# --- a customized mkrequest: fixed DN, string_mask = nombstr, DNS SANs, a challenge ----------


def test_customized_mkrequest() -> None:
    text = custom()
    config = validate(text)
    identity = config.identities["mail01"]
    assert identity.subject == "CN=mail01.example.com,OU=Mail\\, Relay,O=Example GmbH,C=DE"
    assert identity.san_dns == ("mail01.example.com", "smtp.example.com", "mail01")
    assert identity.san_ip == ("192.0.2.25",)
    assert identity.key_bits == 4096
    assert identity.challenge is not None
    assert identity.challenge.file == Path("/etc/scepd/mail01.otp")
    assert config.servers["mail01"].urls == ("https://scep.example.com/scep/pkiclient.exe",)
    notes = comments(text)
    assert any(n.startswith("# sscep: string_mask = nombstr: not mapped (") for n in notes)
    assert any(n.startswith("# sscep: default_md = sha1: not mapped (") for n in notes)


def test_the_challenge_is_never_printed() -> None:
    assert SECRET in (DATA / "mkrequest.custom").read_text()
    text = custom()
    assert SECRET not in text
    assert "Sup3r" not in text and "4711" not in text
    assert "challengePassword" not in text
    # a literal challengePassword in the config part, and one in a parameter nobody maps
    conf = (DATA / "sscep-mail.cnf").read_text()
    script = (
        "#!/bin/sh\nMY_PASSWORD=also-secret\nopenssl req -new -config x\n"
        "cat << EOF > x\n[ req ]\nprompt = no\ndistinguished_name = dn\n"
        "attributes = a\n[ a ]\nchallengePassword = literal-otp\n[ dn ]\nCN = h1\nEOF\n"
    )
    text = convert(conf, script, name="h1", conf_dir=DATA)
    assert "literal-otp" not in text and "also-secret" not in text
    assert "# sscep: MY_PASSWORD = (value not shown): not mapped (" in text
    assert validate(text).identities["h1"].challenge is not None


def test_the_yaml_is_yaml_with_only_servers_and_identities() -> None:
    for text in (shipped(), custom()):
        assert set(yaml.safe_load(text)) == {"servers", "identities"}


def test_default_name() -> None:
    conf = (DATA / "sscep-mail.cnf").read_text()
    assert default_name(conf, (DATA / "mkrequest.custom").read_text(), conf_dir=DATA) == "mail01"
    assert default_name(conf, None, conf_dir=DATA) == "web"
    assert default_name(conf, (DATA / "mkrequest").read_text(), conf_dir=DATA) == "web"


def test_relative_paths_are_taken_from_the_conf_directory(tmp_path: Path) -> None:
    conf = (
        "[sscep]\nURL = http://ca.example.com/scep\n[sscep_enroll]\nPrivateKeyFile = k/local.key\n"
    )
    text = convert(conf, None, name="web", conf_dir=tmp_path)
    assert validate(text).identities["web"].key == tmp_path / "k" / "local.key"


# --- the command and its errors ------------------------------------------------------------------


def test_command_prints_the_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = exit_code(namespace(DATA / "sscep-mail.cnf", DATA / "mkrequest.custom"))
    assert code == 0
    out = capsys.readouterr().out
    assert set(validate(out).identities) == {"mail01"}
    assert SECRET not in out


def test_command_name_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(namespace(DATA / "sscep.cnf", DATA / "mkrequest", "www"))[0] == 0
    assert set(validate(capsys.readouterr().out).servers) == {"www"}


@pytest.mark.parametrize(
    ("conf", "mkrequest", "code", "expected"),
    [
        ("missing.cnf", None, EXIT_FILE, "--conf {dir}/missing.cnf: cannot read ("),
        ("sscep.cnf", "missing", EXIT_FILE, "--mkrequest {dir}/missing: cannot read ("),
        ("bad.cnf", None, EXIT_USAGE, "{dir}/bad.cnf:3: expected Key = Value, got 'CACertFile'"),
        ("quote.cnf", None, EXIT_USAGE, "{dir}/quote.cnf:2: unterminated quoted value"),
        ("section.cnf", None, EXIT_USAGE, "{dir}/section.cnf:1: expected a section like [sscep]"),
        ("nourl.cnf", None, EXIT_USAGE, "{dir}/nourl.cnf: no URL = ... setting"),
        ("binary.cnf", None, EXIT_USAGE, "--conf {dir}/binary.cnf: not UTF-8 text (at byte 1)"),
        ("sscep.cnf", "heredoc", EXIT_USAGE, "{dir}/heredoc:2: here-document not closed"),
    ],
)
def test_command_errors(
    tmp_path: Path, conf: str, mkrequest: str | None, code: int, expected: str
) -> None:
    shutil.copy(DATA / "sscep.cnf", tmp_path / "sscep.cnf")
    (tmp_path / "bad.cnf").write_text("[sscep]\nURL = http://ca.example.com/scep\nCACertFile\n")
    (tmp_path / "quote.cnf").write_text('[sscep]\nURL = "http://ca.example.com/scep\n')
    (tmp_path / "section.cnf").write_text("[sscep\nURL = http://ca.example.com/scep\n")
    (tmp_path / "nourl.cnf").write_text("[sscep]\nVerbose = true\n")
    (tmp_path / "binary.cnf").write_bytes(b"[\xff\xfe]\n")
    (tmp_path / "heredoc").write_text("#!/bin/sh\ncat << _EOF_ > x\n[ req ]\nopenssl req\n")
    args = namespace(tmp_path / conf, tmp_path / mkrequest if mkrequest else None)
    got, message = exit_code(args)
    assert got == code
    assert message.startswith(expected.format(dir=tmp_path)), message
    assert "\n" not in message


def test_error_classes() -> None:
    with pytest.raises(UsageError):
        convert("[sscep]\nURL = http://ca.example.com/x\n", None, name="bad name", conf_dir=DATA)
    with pytest.raises(LocalFileError):
        _run(namespace(DATA / "does-not-exist.cnf"))
