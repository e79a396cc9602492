"""The only place scepd speaks HTTP (RFC 8894 §4.1), with requests.

Maps every requests failure to a :class:`~scepd.errors.TransportError` that names the server
and what to try, and refuses HTML error pages where SCEP bytes were expected.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import logging
import os
import re
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from scepd import __version__

if TYPE_CHECKING:
    import requests
from scepd.errors import HttpError, Unreachable, UsageError

log = logging.getLogger("scepd")

# IIS (and so NDES) refuses longer query strings by default: the real cause behind sscep's
# "illegal size of payload" (protocol.md §2.7).
GET_URL_WARN_LENGTH = 2000
MAX_BODY = 4 * 1024 * 1024  # no SCEP answer comes near this; bounds memory on a bad server
PKI_MESSAGE_TYPE = "application/x-pki-message"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    content_type: str
    body: bytes
    url: str
    retry_after: float | None = None  # seconds (RFC 9110 §10.2.3), e.g. with a 503


class Transport(Protocol):
    """What the client needs from HTTP; tests substitute one to inject faults."""

    @property
    def url(self) -> str: ...

    def get(self, operation: str, message: str | None = None) -> HttpResponse: ...

    def post(self, operation: str, body: bytes) -> HttpResponse: ...


def encode_get_message(der: bytes) -> str:
    """Standard base64 (not base64url), then every reserved character percent-encoded."""
    return urllib.parse.quote(base64.b64encode(der).decode("ascii"), safe="")


class HttpTransport:
    """SCEP over HTTP(S) with requests: timeouts, verified TLS, proxies from the environment."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        ca_bundle: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UsageError(
                f"--url {url!r}: expected an http:// or https:// URL of the SCEP service"
            )
        self._url = url
        self._timeout = (connect_timeout, read_timeout)
        # requests is imported on first use: an idle daemon whose certificates are not due
        # never pays its ~5 MB of memory.
        import requests  # noqa: PLC0415

        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = f"scepd/{__version__}"
        self._verify: bool | str = ca_bundle or _system_ca_bundle() or True

    @property
    def url(self) -> str:
        return self._url

    def _operation_url(self, operation: str, message: str | None) -> str:
        sep = "&" if urllib.parse.urlsplit(self._url).query else "?"
        url = f"{self._url}{sep}operation={urllib.parse.quote(operation, safe='')}"
        if message is not None:
            url += f"&message={message}"
        return url

    def get(self, operation: str, message: str | None = None) -> HttpResponse:
        url = self._operation_url(operation, message)
        if len(url) > GET_URL_WARN_LENGTH:
            log.warning(
                "GET URL is %d characters; IIS (NDES) refuses query strings over 2048 by "
                "default (HTTP 404/414): raise maxQueryString/MaxFieldLength or use POST",
                len(url),
            )
        return self._send("GET", url, None)

    def post(self, operation: str, body: bytes) -> HttpResponse:
        url = self._operation_url(operation, None)
        return self._send("POST", url, body)

    def _send(self, method: str, url: str, body: bytes | None) -> HttpResponse:
        import requests  # noqa: PLC0415 - already loaded by __init__

        headers = {"Content-Type": PKI_MESSAGE_TYPE} if body is not None else {}
        server = self._url
        try:
            with self._session.request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                verify=self._verify,
                stream=True,
                allow_redirects=True,
            ) as response:
                content = _read_capped(response)
                result = HttpResponse(
                    status=response.status_code,
                    content_type=response.headers.get("Content-Type", "").split(";")[0].strip(),
                    body=content,
                    url=url,
                    retry_after=_retry_after(response.headers.get("Retry-After")),
                )
        except requests.exceptions.SSLError as exc:
            raise Unreachable(
                f"{server}: TLS verification failed ({_reason(exc)}); give the issuing CA "
                "with --ca-bundle"
            ) from None
        except requests.exceptions.Timeout:
            raise Unreachable(
                f"{server}: no answer within {self._timeout[0]:g}s connect / "
                f"{self._timeout[1]:g}s read timeout"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise Unreachable(f"{server}: cannot connect ({_reason(exc)})") from None
        except requests.exceptions.RequestException as exc:
            raise Unreachable(f"{server}: HTTP request failed ({_reason(exc)})") from None
        log.debug(
            "%s %s -> HTTP %d, %s, %d bytes",
            method,
            url if len(url) < 200 else url[:200] + "...",
            result.status,
            result.content_type or "no content type",
            len(result.body),
        )
        return result


def _system_ca_bundle() -> str | None:
    """The system trust store (where update-ca-certificates puts an internal CA), unless the
    user pointed requests elsewhere; requests from PyPI would otherwise use certifi's bundle."""
    if os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"):
        return None
    cafile = ssl.get_default_verify_paths().cafile
    return cafile if cafile and os.path.isfile(cafile) else None


def _retry_after(value: str | None) -> float | None:
    """Retry-After as delay-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _read_capped(response: requests.Response) -> bytes:
    chunks = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise HttpError(f"{response.url}: response larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reason(exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"\] ([^'\"()]+)", text) or re.search(r"(\w[^:]*refused)", text)
    return (match.group(1) if match else text)[:160].strip()


def check_response(response: HttpResponse, server: str, what: str) -> bytes:
    """The body of a successful SCEP answer; HTTP errors and HTML pages are HttpError."""
    if response.status >= 400:
        raise HttpError(
            f"{server}: {what} answered HTTP {response.status}{_snippet(response)}",
            status=response.status,
            retry_after=response.retry_after,
        )
    if response.content_type == "text/html" or response.body.lstrip()[:1] == b"<":
        raise HttpError(
            f"{server}: {what} answered with an HTML page instead of SCEP data"
            f"{_snippet(response)}; check the URL (NDES: .../certsrv/mscep/mscep.dll)",
            status=response.status,
        )
    if not response.body:
        raise HttpError(f"{server}: {what} answered with an empty body", status=response.status)
    return response.body


def _snippet(response: HttpResponse) -> str:
    if not response.body:
        return ""
    text = response.body[:2000].decode("utf-8", "replace")
    title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
    text = title.group(1) if title else re.sub(r"<[^>]*>", " ", text)
    import html  # noqa: PLC0415 - error path only: keeps start-up lean

    text = " ".join(html.unescape(text).split())[:120]
    return f': "{text}"' if text else ""
