"""A loopback HTTP server that forwards to a real SCEP server or injects faults.

It is a fault injector, not a SCEP implementation: every SCEP message that is answered at all
comes from the upstream server."""

from __future__ import annotations

import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (status, content type, body) for an operation, or None to forward it upstream.
Canned = tuple[int, str, bytes] | tuple[int, str, bytes, dict[str, str]]
Rule = Callable[[str, bytes], Canned | None]


@dataclass
class Seen:
    method: str
    path: str
    operation: str
    message: str | None
    body: bytes


@dataclass
class FaultServer:
    upstream: str | None
    rules: dict[str, Rule] = field(default_factory=dict)
    delay: float = 0.0
    tls: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}/scep"

    def start(self) -> FaultServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _handle(self, body: bytes) -> None:
                split = urllib.parse.urlsplit(self.path)
                # keep_blank_values and no "+"-to-space: see exactly what the client sent.
                raw = dict(p.split("=", 1) for p in split.query.split("&") if "=" in p)
                operation = urllib.parse.unquote(raw.get("operation", ""))
                owner.seen.append(
                    Seen(self.command, self.path, operation, raw.get("message"), body)
                )
                if owner.delay:
                    time.sleep(owner.delay)
                rule = owner.rules.get(operation)
                canned = rule(self.path, body) if rule else None
                if canned is None:
                    canned = owner.forward(self.command, split.query, body)
                status, ctype, payload = canned[:3]
                headers: dict[str, str] = canned[3] if len(canned) > 3 else {}  # type: ignore[misc]
                try:
                    self.send_response(status)
                    if ctype:
                        self.send_header("Content-Type", ctype)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:
                self._handle(b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self._handle(self.rfile.read(length))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self._httpd.socket = self.tls.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def forward(self, method: str, query: str, body: bytes) -> Canned:
        if self.upstream is None:
            return (502, "text/plain", b"no upstream")
        request = urllib.request.Request(
            f"{self.upstream}?{query}", data=body if method == "POST" else None, method=method
        )
        if method == "POST":
            request.add_header("Content-Type", "application/x-pki-message")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return (response.status, response.headers.get("Content-Type", ""), response.read())
        except urllib.error.HTTPError as exc:
            return (exc.code, exc.headers.get("Content-Type", ""), exc.read())

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
