"""``scepd devca serve``: the stdlib HTTP server around :class:`~scepd.devca.app.ScepApp`.

stdout carries the SCEP URL first, then one line per request, each flushed at once (tests and
admins follow them live).  SIGTERM and SIGINT stop the server cleanly."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from scepd.devca.app import MAX_BODY, ScepApp
from scepd.devca.state import CADir
from scepd.errors import ScepError

_print_lock = threading.Lock()


def emit(line: str) -> None:
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _handler(app: ScepApp, debug: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "scepd-devca"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(b"")

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._send(413, "text/plain", b"body too large or unreadable length\n")
                emit("operation=- messageType=- transactionID=- result=413")
                return
            self._answer(self.rfile.read(length))

        def _answer(self, body: bytes) -> None:
            try:
                response = app.handle(self.command, self.path, body)
            except Exception as exc:  # a devca bug must not kill the server or leak a trace
                # A ScepError's one line names the file and what to do; other errors only
                # their type (details with --debug).
                error = (
                    f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, ScepError)
                    else type(exc).__name__
                )
                if debug:  # --debug: the traceback on stderr, never in the HTTP answer
                    traceback.print_exc(file=sys.stderr)
                emit(f"operation=- messageType=- transactionID=- result=500 error={error}")
                self._send(500, "text/plain", b"internal error\n")
                return
            emit(response.log)  # before the answer: whoever got the answer can see the line
            self._send(response.status, response.content_type, response.body)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # our own line per request replaces http.server's (which has the URL)

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (killed, timed out) is one line, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            emit(f"operation=- messageType=- transactionID=- result=disconnected ({error})")
            return
        super().handle_error(request, client_address)


def serve(ca_dir: CADir, host: str, port: int, *, debug: bool = False) -> int:
    app = ScepApp(ca_dir, _utc_now, os.urandom)
    server = _Server((host, port), _handler(app, debug))
    server.daemon_threads = True
    real_host, real_port = str(server.server_address[0]), server.server_address[1]
    shown = f"[{real_host}]" if ":" in real_host else real_host
    emit(f"scep url: http://{shown}:{real_port}{app.paths[0]}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=server.serve_forever, name="devca-http", daemon=True)
    thread.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
