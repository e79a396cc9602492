"""The configuration file: every error is one exact line (file:line: key.path: what), and good
files give the typed configuration the daemon runs on."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from scepd import config as config_module
from scepd.client import RenewalMode
from scepd.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    RENEWAL_MODES,
    Challenge,
    Config,
    ConfigError,
    Retry,
    ShellCommand,
    default_config_path,
    load_config,
    parse_config,
)
from scepd.errors import EXIT_USAGE, UsageError

# Lines 1-3 and 4-9: a case appends at line 10, inside identity "web".
SERVERS = "servers:\n  ndes:\n    url: http://ndes.example.com/certsrv/mscep/mscep.dll\n"
IDENTITY = (
    "identities:\n"
    "  web:\n"
    "    server: ndes\n"
    "    subject: CN=web01.example.com,O=Example\n"
    "    key: /etc/ssl/private/web01.key\n"
    "    cert: /etc/ssl/certs/web01.pem\n"
)
GOOD = SERVERS + IDENTITY
EXAMPLE = REPO / "config.example.yaml"


def parse(text: str) -> Config:
    return parse_config(text, Path("config.yaml"))


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message
    return message


BAD = [
    # unknown keys, with did-you-mean, at every level
    (
        "state_dri: /var/lib/scepd\n",
        "config.yaml:1: state_dri: unknown key (did you mean state_dir?)",
    ),
    (
        "defaults:\n  renew_at: 66%\n  jiter: 5%\n",
        "config.yaml:3: defaults.jiter: unknown key (did you mean jitter?)",
    ),
    (
        "defaults:\n  retry: {initial: auto, limit: 1h}\n",
        "config.yaml:2: defaults.retry.limit: unknown key (expected one of: initial, max)",
    ),
    (
        SERVERS + "    fingerprint: md5:A656FA66AB12B4330A1B2C3D4E5F6071\n",
        "config.yaml:4: servers.ndes.fingerprint: unknown key (did you mean ca_fingerprint?)",
    ),
    (
        GOOD + '    keymode: "0600"\n',
        "config.yaml:10: identities.web.keymode: unknown key (did you mean key_mode?)",
    ),
    (
        GOOD + "    colour: blue\n",
        "config.yaml:10: identities.web.colour: unknown key (expected one of: server, subject, "
        "san, key_usage, extended_key_usage, key, cert, chain, fullchain, owner, group, key_mode, "
        "cert_mode, renew_at, renew_before, jitter, retry, key_bits, hook_timeout, challenge, "
        "renewal, hooks)",
    ),
    (
        GOOD + "    san:\n      dns: [web01.example.com]\n      dsn: [web01]\n",
        "config.yaml:12: identities.web.san.dsn: unknown key (did you mean dns?)",
    ),
    (
        GOOD + "    renewal: {mode: auto, new_keys: false}\n",
        "config.yaml:10: identities.web.renewal.new_keys: unknown key (did you mean new_key?)",
    ),
    (
        GOOD + "    hooks:\n      post_renewal: [[systemctl, reload, nginx]]\n",
        "config.yaml:11: identities.web.hooks.post_renewal: unknown key (did you mean post_renew?)",
    ),
    (
        "hooks:\n  post_renew: [[systemctl, reload, nginx]]\n",
        "config.yaml:2: hooks.post_renew: unknown key (did you mean post_renew_batch?)",
    ),
    # durations and percentages
    (
        SERVERS + "    timeout: soon\n",
        "config.yaml:4: servers.ndes.timeout: expected a duration like 30s, got 'soon'",
    ),
    (
        SERVERS + "    timeout: 30\n",
        "config.yaml:4: servers.ndes.timeout: expected a duration like 30s, got 30 (write 30s)",
    ),
    (
        SERVERS + "    timeout: 0s\n",
        "config.yaml:4: servers.ndes.timeout: must be longer than zero, got '0s'",
    ),
    (
        "defaults:\n  renew_at: 66\n",
        "config.yaml:2: defaults.renew_at: expected a percentage like 66%, got 66 (write 66%)",
    ),
    (
        "defaults:\n  renew_at: 0.66\n",
        "config.yaml:2: defaults.renew_at: expected a percentage like 66%, got 0.66 (write 66%)",
    ),
    (
        "defaults:\n  renew_at: 150%\n",
        "config.yaml:2: defaults.renew_at: expected a percentage above 0% and below 100%, "
        "got '150%'",
    ),
    (
        "defaults:\n  renew_at: two thirds\n",
        "config.yaml:2: defaults.renew_at: expected a percentage like 66%, got 'two thirds'",
    ),
    (
        "defaults:\n  jitter: 50%\n",
        "config.yaml:2: defaults.jitter: expected a percentage from 0% to below 50%, got '50%'",
    ),
    (
        GOOD + "    retry: {initial: 1h, max: 5m}\n",
        "config.yaml:10: identities.web.retry.max: shorter than retry.initial (1h)",
    ),
    # renew_at and renew_before exclude each other within one level
    (
        "defaults:\n  renew_at: 66%\n  renew_before: 30d\n",
        "config.yaml:3: defaults.renew_before: cannot be set together with renew_at (line 2); "
        "choose one",
    ),
    (
        GOOD + "    renew_before: 30d\n    renew_at: 50%\n",
        "config.yaml:11: identities.web.renew_at: cannot be set together with renew_before "
        "(line 10); choose one",
    ),
    # required keys and references
    (
        SERVERS + IDENTITY.replace("    cert: /etc/ssl/certs/web01.pem\n", ""),
        "config.yaml:5: identities.web: missing key 'cert'",
    ),
    (
        "servers:\n  ndes:\n    timeout: 30s\n",
        "config.yaml:2: servers.ndes: missing key 'url'",
    ),
    (
        GOOD.replace("server: ndes", "server: ndex"),
        "config.yaml:6: identities.web.server: no server 'ndex' (did you mean ndes?)",
    ),
    (
        IDENTITY,
        "config.yaml:3: identities.web.server: no server 'ndes' (no servers are defined)",
    ),
    # paths and modes
    (
        GOOD.replace("key: /etc/ssl/private/web01.key", "key: web01.key"),
        "config.yaml:8: identities.web.key: must be an absolute path, got 'web01.key'",
    ),
    (
        "state_dir: var/lib/scepd\n",
        "config.yaml:1: state_dir: must be an absolute path, got 'var/lib/scepd'",
    ),
    (
        GOOD + "    key_mode: 0640\n",
        'config.yaml:10: identities.web.key_mode: expected a quoted octal string like "0640", '
        'got 0640 (unquoted it is read as a number; write "0640")',
    ),
    (
        GOOD + '    key_mode: "0980"\n',
        "config.yaml:10: identities.web.key_mode: expected 3 or 4 octal digits up to 0777 "
        "like \"0640\", got '0980'",
    ),
    (
        GOOD + '    cert_mode: "4755"\n',
        "config.yaml:10: identities.web.cert_mode: expected 3 or 4 octal digits up to 0777 "
        "like \"0640\", got '4755'",
    ),
    # servers
    (
        SERVERS + "    ca_fingerprint: md5:0A1B\n",
        "config.yaml:4: servers.ndes.ca_fingerprint: 'md5:0A1B': a md5 fingerprint has 32 hex "
        "digits, got 4",
    ),
    (
        SERVERS + "    ca_fingerprint: crc32:0A1B\n",
        "config.yaml:4: servers.ndes.ca_fingerprint: expected ALG:HEX with ALG one of sha256, "
        "sha1, md5, got 'crc32:0A1B'",
    ),
    (
        "servers:\n  ndes:\n    url: ftp://ndes.example.com/scep\n",
        "config.yaml:3: servers.ndes.url: expected an http:// or https:// URL, "
        "got 'ftp://ndes.example.com/scep'",
    ),
    (
        "servers:\n  ndes:\n    url:\n      - https://ndes1.example.com/scep\n      - ndes2\n",
        "config.yaml:5: servers.ndes.url[1]: expected an http:// or https:// URL, got 'ndes2'",
    ),
    (
        SERVERS + "    profile: ndse\n",
        "config.yaml:4: servers.ndes.profile: expected one of auto, ndes, rfc8894, got 'ndse' "
        "(did you mean ndes?)",
    ),
    (
        SERVERS + "    debug: maybe\n",
        "config.yaml:4: servers.ndes.debug: expected true or false, got 'maybe'",
    ),
    # identity values
    (
        GOOD + "    renewal: {mode: renewal}\n",
        "config.yaml:10: identities.web.renewal.mode: expected one of auto, renewalreq, "
        "signed-pkcsreq, got 'renewal' (did you mean renewalreq?)",
    ),
    (
        GOOD + "    san: {dns: [web01.example.com], ip: [192.0.2.10, 192.0.2.300]}\n",
        "config.yaml:10: identities.web.san.ip[1]: not an IPv4 or IPv6 address, got '192.0.2.300'",
    ),
    (
        GOOD + "    san: {dns: web01.example.com}\n",
        "config.yaml:10: identities.web.san.dns: expected a list like [web01.example.com], "
        "got 'web01.example.com' (write [web01.example.com])",
    ),
    (
        GOOD.replace("subject: CN=web01.example.com,O=Example", "subject: web01.example.com"),
        "config.yaml:7: identities.web.subject: expected an RFC 4514 name like "
        "CN=web01.example.com,O=Example, got 'web01.example.com'",
    ),
    (
        GOOD + "    key_bits: 1024\n",
        "config.yaml:10: identities.web.key_bits: must be at least 2048 (CAs refuse smaller RSA "
        "keys), got 1024",
    ),
    (
        GOOD + "    key_usage: [digitalSignature, keyEncipherement]\n",
        "config.yaml:10: identities.web.key_usage[1]: unknown key usage 'keyEncipherement' "
        "(did you mean keyEncipherment?)",
    ),
    (
        GOOD + "    extended_key_usage: [serverAuth, 1.3.6.1.5.5.7.3.2, sever]\n",
        "config.yaml:10: identities.web.extended_key_usage[2]: unknown extended key usage "
        "'sever' (did you mean serverAuth?)",
    ),
    (
        GOOD + "    challenge: {file: /etc/scepd/web01.otp, env: SCEP_OTP}\n",
        "config.yaml:10: identities.web.challenge.env: cannot be set together with file "
        "(line 10); choose one",
    ),
    (
        GOOD + "    challenge: {}\n",
        "config.yaml:10: identities.web.challenge: expected one of file, env or credential",
    ),
    (
        GOOD + "    challenge: {credential: ../otp}\n",
        "config.yaml:10: identities.web.challenge.credential: expected a credential name "
        "(a file name, no /), got '../otp'",
    ),
    (
        "identities:\n  web 01: {}\n",
        "config.yaml:2: identities.web 01: an identity name has letters, digits, '.', '_' and "
        "'-' only (it names state files)",
    ),
    # structure
    (
        GOOD + "    key: /etc/ssl/private/other.key\n",
        "config.yaml:10: identities.web.key: duplicate key (first at line 8)",
    ),
    (
        GOOD + "  api:\n    server: ndes\n    subject: CN=api\n    key: /etc/ssl/private/api.key\n"
        "    cert: /etc/ssl/certs//web01.pem\n",
        "config.yaml:14: identities.api.cert: /etc/ssl/certs/web01.pem is already written by "
        "identities.web.cert (line 9)",
    ),
    (
        "defaults:\n  key: /etc/ssl/private/shared.key\n"
        + SERVERS
        + "identities:\n"
        + "  a: {server: ndes, subject: CN=a, cert: /etc/ssl/a.pem}\n"
        + "  b: {server: ndes, subject: CN=b, cert: /etc/ssl/b.pem}\n",
        "config.yaml:2: defaults.key: /etc/ssl/private/shared.key would be written by both "
        "identities a and b; set key in each identity",
    ),
    (
        GOOD + "    chain: /etc/ssl/certs/web01.pem\n",
        "config.yaml:10: identities.web.chain: /etc/ssl/certs/web01.pem is already written by "
        "identities.web.cert (line 9)",
    ),
    (
        "servers: [\n  ndes\n",
        "config.yaml:3: YAML syntax error: expected ',' or ']', but got '<stream end>'",
    ),
    (
        "servers:\n  ndes:\n\turl: http://x/\n",
        "config.yaml:3: YAML syntax error: found character '\\t' that cannot start any token",
    ),
    (
        "identities:\n  web: *nowhere\n",
        "config.yaml:2: YAML syntax error: found undefined alias 'nowhere'",
    ),
    (
        "- servers\n- identities\n",
        "config.yaml:1: expected a mapping of settings (servers:, identities:, ...), got a list",
    ),
    (
        "# nothing\n",
        "config.yaml:1: expected a mapping of settings (servers:, identities:, ...), "
        "got an empty file",
    ),
    (
        "defaults: {<<: {? [a]: b}}\n",
        "config.yaml:1: defaults.?: expected a key name, got a list",
    ),
    (
        "servers: [ndes]\n",
        "config.yaml:1: servers: expected a mapping, got a list",
    ),
    # hooks
    (
        GOOD + "    hooks: {post_renew: systemctl reload nginx}\n",
        "config.yaml:10: identities.web.hooks.post_renew: expected a list like "
        "[[systemctl, reload, nginx], {shell: \"...\"}], got 'systemctl reload nginx'",
    ),
    (
        GOOD + "    hooks:\n      post_renew: [systemctl reload nginx]\n",
        "config.yaml:11: identities.web.hooks.post_renew[0]: expected a command: an argument "
        "list like [systemctl, reload, nginx] or {shell: \"...\"}, got 'systemctl reload nginx'",
    ),
    (
        GOOD + "    hooks:\n      pre_renew:\n        - [systemctl, [reload], nginx]\n",
        "config.yaml:12: identities.web.hooks.pre_renew[0][1]: expected a string, got a list",
    ),
    (
        "hooks:\n  post_renew_batch: [{shel: reload-all}]\n",
        "config.yaml:2: hooks.post_renew_batch[0].shel: unknown key (did you mean shell?)",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m.split(": ")[1] for _, m in BAD])
def test_bad_config_names_file_line_and_key(text: str, message: str) -> None:
    assert error(text) == message


def test_first_error_in_document_order_is_reported() -> None:
    text = GOOD + "    retry: {initial: soon}\n    colour: blue\n"
    assert error(text) == (
        "config.yaml:10: identities.web.retry.initial: expected auto or a duration like 30s, "
        "got 'soon'"
    )


def test_config_error_is_a_usage_error_exit_2() -> None:
    assert issubclass(ConfigError, UsageError)
    assert ConfigError.exit_code == EXIT_USAGE


def test_errors_name_the_path_as_given(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^/etc/scepd/config.yaml:1: state_dri: unknown key"):
        parse_config("state_dri: /x\n", Path("/etc/scepd/config.yaml"))
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"{missing}: cannot read (No such file or directory)"


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.path == path
    assert list(config.identities) == ["web"]
    path.write_text("state_dir: relative\n")
    with pytest.raises(ConfigError, match=rf"^{path}:1: state_dir: must be an absolute path"):
        load_config(path)


def test_minimal_identity_gets_the_documented_defaults() -> None:
    config = parse(GOOD)
    assert config.state_dir == Path("/var/lib/scepd")
    assert config.metrics_file is None
    assert config.post_renew_batch == ()
    server = config.servers["ndes"]
    assert server.urls == ("http://ndes.example.com/certsrv/mscep/mscep.dll",)
    assert (server.profile, server.ca_fingerprint, server.ca_identifier) == ("auto", None, None)
    assert (server.timeout, server.debug, server.ca_bundle) == (dt.timedelta(0, 30), False, None)
    web = config.identities["web"]
    assert web.server is server
    assert web.line == 5
    assert web.key == Path("/etc/ssl/private/web01.key")
    assert web.cert == Path("/etc/ssl/certs/web01.pem")
    assert (web.chain, web.fullchain, web.owner, web.group) == (None, None, None, None)
    assert web.key_usage == ("digitalSignature", "keyEncipherment")
    assert web.extended_key_usage == ()
    assert (web.san_dns, web.san_ip, web.san_email, web.san_uri) == ((), (), (), ())
    assert (web.key_mode, web.cert_mode) == (0o600, 0o644)
    assert (web.renew_at, web.renew_before, web.jitter) == (0.66, None, 0.05)
    assert web.retry == Retry(initial=None, max=None)
    assert (web.key_bits, web.hook_timeout) == (2048, dt.timedelta(seconds=60))
    assert web.challenge is None
    assert (web.renewal.mode, web.renewal.new_key, web.renewal.send_challenge) == (
        "auto",
        True,
        None,
    )
    assert (web.hooks.pre_renew, web.hooks.post_renew) == ((), ())


INHERIT = (
    "defaults:\n"
    "  renew_at: 50%\n"
    "  jitter: 10%\n"
    "  key_bits: 4096\n"
    "  retry: {initial: 5m}\n"
    "  renewal: {mode: renewalreq}\n"
    "  challenge: {env: SCEP_OTP}\n"
    "  hooks: {post_renew: [[systemctl, reload, nginx]]}\n" + SERVERS + "identities:\n"
    "  a: {server: ndes, subject: CN=a, key: /k/a, cert: /c/a}\n"
    "  b:\n"
    "    server: ndes\n"
    "    subject: CN=b\n"
    "    key: /k/b\n"
    "    cert: /c/b\n"
    "    renew_before: 30d\n"
    "    key_bits: 3072\n"
    "    retry: {max: 2h}\n"
    "    renewal: {new_key: false}\n"
    "    challenge: {credential: scep-otp}\n"
    "    hooks: {pre_renew: [[/usr/local/bin/pre]]}\n"
)


def test_identities_inherit_defaults() -> None:
    a = parse(INHERIT).identities["a"]
    assert (a.renew_at, a.renew_before, a.jitter, a.key_bits) == (0.5, None, 0.1, 4096)
    assert a.retry == Retry(initial=dt.timedelta(minutes=5), max=None)
    assert (a.renewal.mode, a.renewal.new_key) == ("renewalreq", True)
    assert a.challenge == Challenge(env="SCEP_OTP")
    assert a.hooks.post_renew == (("systemctl", "reload", "nginx"),)


def test_identity_values_override_defaults() -> None:
    b = parse(INHERIT).identities["b"]
    # renew_before in the identity replaces renew_at from defaults
    assert (b.renew_at, b.renew_before) == (None, dt.timedelta(days=30))
    assert (b.jitter, b.key_bits) == (0.1, 3072)
    # retry, renewal and hooks merge key by key; challenge is replaced as a whole
    assert b.retry == Retry(initial=dt.timedelta(minutes=5), max=dt.timedelta(hours=2))
    assert (b.renewal.mode, b.renewal.new_key) == ("renewalreq", False)
    assert b.challenge == Challenge(credential="scep-otp")
    assert b.hooks.pre_renew == (("/usr/local/bin/pre",),)
    assert b.hooks.post_renew == (("systemctl", "reload", "nginx"),)


def test_identity_renew_at_overrides_defaults_renew_before() -> None:
    text = "defaults:\n  renew_before: 14d\n" + GOOD + "    renew_at: 75%\n"
    web = parse(text).identities["web"]
    assert (web.renew_at, web.renew_before) == (0.75, None)
    inherited = parse("defaults:\n  renew_before: 14d\n" + GOOD).identities["web"]
    assert (inherited.renew_at, inherited.renew_before) == (None, dt.timedelta(days=14))


def test_identity_can_drop_the_default_challenge() -> None:
    text = "defaults:\n  challenge: {env: OTP}\n" + GOOD + "    challenge: null\n"
    assert parse(text).identities["web"].challenge is None


def test_url_as_string_or_list() -> None:
    one = parse(GOOD).servers["ndes"].urls
    assert one == ("http://ndes.example.com/certsrv/mscep/mscep.dll",)
    text = (
        "servers:\n  ndes:\n    url:\n      - https://ndes1.example.com/certsrv/mscep/mscep.dll\n"
        "      - http://ndes2.example.com/certsrv/mscep/mscep.dll\n"
    )
    assert parse(text).servers["ndes"].urls == (
        "https://ndes1.example.com/certsrv/mscep/mscep.dll",
        "http://ndes2.example.com/certsrv/mscep/mscep.dll",
    )


def test_hooks_argv_and_shell_forms() -> None:
    text = (
        GOOD
        + "    hooks:\n"
        + "      post_renew:\n"
        + "        - [systemctl, reload, nginx]\n"
        + "        - [chmod, 0640, /etc/ssl/certs/web01.pem]\n"
        + '        - {shell: "echo done >> /tmp/x"}\n'
        + "hooks:\n  post_renew_batch: [[systemctl, reload, haproxy]]\n"
    )
    config = parse(text)
    assert config.identities["web"].hooks.post_renew == (
        ("systemctl", "reload", "nginx"),
        ("chmod", "0640", "/etc/ssl/certs/web01.pem"),  # as written, not YAML's number 416
        ShellCommand(shell="echo done >> /tmp/x"),
    )
    assert config.post_renew_batch == (("systemctl", "reload", "haproxy"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", dt.timedelta(seconds=90)), ("5m", dt.timedelta(minutes=5)),
     ("6h", dt.timedelta(hours=6)), ("30d", dt.timedelta(days=30))],
)  # fmt: skip
def test_durations(text: str, expected: dt.timedelta) -> None:
    config = parse(SERVERS + f"    timeout: {text}\n" + IDENTITY + f"    hook_timeout: {text}\n")
    assert config.servers["ndes"].timeout == expected
    assert config.identities["web"].hook_timeout == expected


@pytest.mark.parametrize(
    ("renew_at", "jitter", "expected"),
    [("66%", "5%", (0.66, 0.05)), ("1%", "0%", (0.01, 0.0)), ("99.5%", "49%", (0.995, 0.49)),
     ("80 %", "12.5%", (0.8, 0.125))],
)  # fmt: skip
def test_percentages(renew_at: str, jitter: str, expected: tuple[float, float]) -> None:
    web = parse(GOOD + f"    renew_at: {renew_at}\n    jitter: {jitter}\n").identities["web"]
    assert (web.renew_at, web.jitter) == pytest.approx(expected)


def test_full_identity() -> None:
    text = GOOD + (
        "    san:\n"
        "      dns: [web01.example.com, '*.web01.example.com']\n"
        "      ip: [192.0.2.10, '2001:db8::1']\n"
        "      email: [ops@example.com]\n"
        "      uri: ['https://web01.example.com/']\n"
        "    extended_key_usage: [serverAuth, 1.3.6.1.5.5.7.3.2]\n"
        "    key_usage: [digitalSignature]\n"
        "    chain: /etc/ssl/certs/web01-chain.pem\n"
        "    fullchain: /etc/ssl/certs/web01-full.pem\n"
        "    owner: 0\n"
        "    group: ssl-cert\n"
        '    key_mode: "640"\n'
        "    cert_mode: !!str 0644\n"
        "    renewal: {mode: signed-pkcsreq, new_key: no, send_challenge: true}\n"
        "    challenge: {file: /etc/scepd/web01.otp}\n"
    )
    web = parse(text).identities["web"]
    assert web.san_dns == ("web01.example.com", "*.web01.example.com")
    assert web.san_ip == ("192.0.2.10", "2001:db8::1")
    assert (web.san_email, web.san_uri) == (("ops@example.com",), ("https://web01.example.com/",))
    assert web.extended_key_usage == ("serverAuth", "1.3.6.1.5.5.7.3.2")
    assert web.key_usage == ("digitalSignature",)
    assert web.fullchain == Path("/etc/ssl/certs/web01-full.pem")
    assert (web.owner, web.group, web.key_mode, web.cert_mode) == ("0", "ssl-cert", 0o640, 0o644)
    assert (web.renewal.mode, web.renewal.new_key, web.renewal.send_challenge) == (
        "signed-pkcsreq",
        False,
        True,
    )
    assert web.challenge == Challenge(file=Path("/etc/scepd/web01.otp"))


def test_server_settings() -> None:
    text = (
        "servers:\n  ejbca:\n    url: https://ca.example.com/ejbca/publicweb/apply/scep/pkiclient.exe\n"
        "    ca_fingerprint: 'md5:A656FA66 AB12B433 0A1B2C3D 4E5F6071'\n"
        "    profile: rfc8894\n    ca_identifier: ManagementCA\n    ca_bundle: /etc/ssl/ca.pem\n"
        "    timeout: 2m\n    debug: yes\n"
    )
    server = parse(text).servers["ejbca"]
    assert server.ca_fingerprint == "md5:A656FA66 AB12B433 0A1B2C3D 4E5F6071"  # as written
    assert (server.profile, server.ca_identifier) == ("rfc8894", "ManagementCA")
    assert (server.ca_bundle, server.timeout, server.debug) == (
        Path("/etc/ssl/ca.pem"),
        dt.timedelta(minutes=2),
        True,
    )


def test_empty_identities_and_servers_are_allowed() -> None:
    assert parse("identities: {}\n").identities == {}
    assert parse("servers:\nidentities:\n").servers == {}


def test_anchors_aliases_and_merge_keys() -> None:
    text = (
        SERVERS
        + "identities:\n"
        + "  a: &base\n"
        + "    server: ndes\n"
        + "    subject: CN=a\n"
        + "    key: /k/a\n"
        + "    cert: /c/a\n"
        + "    hooks: {post_renew: &reload [[systemctl, reload, nginx]]}\n"
        + "  b:\n"
        + "    <<: *base\n"
        + "    subject: CN=b\n"
        + "    key: /k/b\n"
        + "    cert: /c/b\n"
    )
    config = parse(text)
    b = config.identities["b"]
    assert (b.subject, b.key, b.server.name) == ("CN=b", Path("/k/b"), "ndes")
    assert b.hooks.post_renew == (("systemctl", "reload", "nginx"),)
    # a merged value that is wrong is reported where it is written
    bad = text.replace("    subject: CN=a\n", "    subject: CN=a\n    key_bits: 1\n", 1)
    assert error(bad).startswith("config.yaml:8: identities.a.key_bits: must be at least 2048")


def test_renewal_modes_are_the_clients() -> None:
    assert set(RENEWAL_MODES) == {mode.value for mode in RenewalMode}


def test_default_config_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert default_config_path() == DEFAULT_CONFIG == Path("/etc/scepd/config.yaml")
    monkeypatch.setenv(CONFIG_ENV, "/srv/scepd/test.yaml")
    assert default_config_path() == Path("/srv/scepd/test.yaml")


# --- config.example.yaml ------------------------------------------------------------------------

BEGIN, END = "# --- example identity begin", "# --- example identity end"


def enable_example(text: str) -> str:
    """What the file's header tells the admin to do: delete the marked lines, uncomment the
    block between the markers."""
    lines = text.splitlines()
    begin, end = lines.index(BEGIN), lines.index(END)
    out = []
    for number, line in enumerate(lines):
        if line.endswith("# example: delete this line"):
            continue
        if begin < number < end:
            assert line == "#" or line.startswith("# "), line
            out.append(line[2:])
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def test_example_config_as_shipped_has_no_identity() -> None:
    config = load_config(EXAMPLE)
    assert (config.identities, config.servers) == ({}, {})
    assert config.state_dir == Path("/var/lib/scepd")


def test_example_identity_uncommented_is_valid() -> None:
    config = parse_config(enable_example(EXAMPLE.read_text()), EXAMPLE)
    web = config.identities["web"]
    assert web.server is config.servers["ndes"]
    assert web.server.profile == "ndes"
    assert web.subject == "CN=web01.example.com,O=Example"
    assert (web.key_mode, web.renew_at) == (0o640, 0.66)
    assert web.hooks.post_renew[0] == ("systemctl", "reload", "nginx")


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    tables = [config_module._TOP_PARSERS, config_module._SERVER_PARSERS,
              config_module._IDENTITY_PARSERS, config_module._SAN_PARSERS,
              config_module._CHALLENGE_PARSERS, *config_module._NESTED.values(),
              {"post_renew_batch": None, "shell": None}]  # fmt: skip
    for key in {key for table in tables for key in table}:
        assert re.search(rf"[{{\s]{key}:", text), key


FULL = enable_example(EXAMPLE.read_text())


def only_config_errors(text: str) -> None:
    try:
        parse(text)
    except ConfigError as exc:
        assert re.fullmatch(r"config\.yaml:[0-9]+: [^\n]+", str(exc)), str(exc)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, len(FULL) - 1),
    st.integers(0, 20),
    st.sampled_from(list(" :-[]{}#&*!%'\"x0\n\t")),
)
def test_mangled_config_gives_one_line_config_error(at: int, cut: int, char: str) -> None:
    only_config_errors(FULL[:at] + char + FULL[at + cut :])


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=" :-[]{}#&*!<?%'\"ab0.\n", max_size=60))
def test_arbitrary_text_gives_one_line_config_error(text: str) -> None:
    only_config_errors(text)
