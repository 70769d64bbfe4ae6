"""A lying S3 region: an HTTP proxy that acknowledges uploads but stores altered bytes.

Toxiproxy works on TCP streams and can delay, cut or slice them, never change a byte; so a region
that answers 200 to a PUT yet keeps different bytes (a faulty gateway, a bad disk under the object
store) needs this proxy. It forwards every request to the real S3 server unchanged, except that the
body of a PUT whose path ends with one of the given suffixes gets one byte flipped in the middle.
The checksum headers the client sent are dropped with it, so the server stores the altered object
as if it had been sent that way, exactly what a lying region looks like from outside.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from chaos.errors import FaultInjectionError

# Headers that describe the body the client sent; forwarded with an altered body they would make the
# server refuse it, which is a different fault (the upload breaks) from the one this proxy injects.
_BODY_CHECKS = ("content-md5", "x-amz-content-sha256", "x-amz-sdk-checksum-algorithm")
_HOP = ("connection", "keep-alive", "transfer-encoding", "proxy-connection", "host")


@dataclass
class TamperLog:
    """What the proxy altered: request paths, in order (thread-safe)."""

    altered: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str) -> None:
        """Record one altered upload."""
        with self.lock:
            self.altered.append(path)


def _handler(upstream: str, suffixes: tuple[str, ...], log: TamperLog) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one upstream and one set of path suffixes."""
    host = urlsplit(upstream).netloc

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return None  # the suite's evidence is the TamperLog, not stderr noise

        def _forward(self) -> None:
            if self.headers.get("transfer-encoding") or "aws-chunked" in self.headers.get(
                "content-encoding", ""
            ):
                # Refuse loudly rather than forward a body this proxy cannot alter: the fault would
                # silently not be injected.
                self.send_error(501, "s3_tamper proxy needs Content-Length bodies")
                return
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            path = urlsplit(self.path).path
            if self.command == "PUT" and body and path.endswith(suffixes):
                altered = bytearray(body)
                altered[len(altered) // 2] ^= 0xFF
                body = bytes(altered)
                headers = {
                    k: v
                    for k, v in headers.items()
                    if k.lower() not in _BODY_CHECKS and not k.lower().startswith("x-amz-checksum-")
                }
                headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
                log.add(path)
            headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(host, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler


@contextmanager
def tampering_region(upstream: str, *, suffixes: tuple[str, ...]) -> Iterator[tuple[str, TamperLog]]:
    """Run the proxy in front of upstream (an S3 endpoint URL); yield (its URL, the TamperLog)."""
    if not suffixes:
        raise FaultInjectionError("tampering_region needs at least one path suffix to alter")
    log = TamperLog()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream.rstrip("/"), suffixes, log))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="s3-tamper", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
