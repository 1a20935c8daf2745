"""An HTTP/1.1 reverse proxy on 127.0.0.1 that injects faults, standard library only.

Put it in front of a real server (the GCS emulator) and point the client at
``proxy.url``.  Every request is forwarded unchanged (method, path, query,
headers, body), except that for a configurable, seeded share of requests the
proxy instead:

* ``drop``      closes the connection after reading the request, answering nothing;
* ``error503``  answers ``503`` with a GCS-style JSON error body, not forwarding;
* ``delay``     sleeps ``delay_ms`` milliseconds, then forwards.

How bodies are handled (simple and correct for keep-alive and chunking):
the request body is read completely (by ``Content-Length`` or by de-chunking
``Transfer-Encoding: chunked``) and forwarded with a ``Content-Length``; the
upstream response is read completely (``http.client`` de-chunks it) and
relayed with a ``Content-Length``.  Bodies are never rewritten.  Only the
``Location`` response header is rewritten from the upstream's base URL to the
proxy's, so that a client following a resumable-upload session URL keeps going
through the proxy (fake-gcs-server answers absolute URLs built from its
``-external-url``).

Every connection goes to 127.0.0.1 (or whatever host the upstream URL names);
the proxy itself binds only to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FaultProxy"]

# Hop-by-hop headers (RFC 9110 7.6.1) plus the ones the proxy recomputes.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",  # http.server already answered "100 Continue" when asked
}

FAULT_KINDS = ("drop", "error503", "delay")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # gcsfs opens many connections at once

    def handle_error(self, request, client_address):
        # A client that hangs up mid-answer is normal under fault injection
        # (and at shutdown); anything else is a bug worth a traceback.
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FaultProxy:
    """Reverse proxy in front of ``upstream`` (e.g. ``"http://127.0.0.1:4443"``).

    Usage::

        with FaultProxy(emulator.url) as proxy:
            proxy.set_faults(error503=0.2, seed=1)
            fs = emulator.filesystem(endpoint_url=proxy.url)
            ...
            assert proxy.stats["error503"] > 0
    """

    def __init__(self, upstream: str, upstream_timeout: float = 60.0, idle_timeout: float = 30.0):
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"FaultProxy needs an http:// upstream URL, got {upstream!r}")
        self.upstream = f"http://{parsed.netloc}"
        self._up_host = parsed.hostname
        self._up_port = parsed.port or 80
        self._up_netloc = parsed.netloc
        self.upstream_timeout = upstream_timeout
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._stats = self._zero_stats()
        self.log: deque[tuple[str, str, str]] = deque(maxlen=10000)  # (method, path, outcome)
        self.clear_faults()

    # -- configuration -----------------------------------------------------
    @staticmethod
    def _zero_stats() -> dict[str, int]:
        return {"requests": 0, "forwarded": 0, "drop": 0, "error503": 0, "delay": 0, "upstream_errors": 0, "client_disconnects": 0}

    def set_faults(
        self,
        drop: float = 0.0,
        error503: float = 0.0,
        delay: float = 0.0,
        delay_ms: int = 200,
        seed: int | None = 0,
        methods: set[str] | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Inject faults into a share of the requests from now on.

        ``drop``, ``error503`` and ``delay`` are probabilities (their sum must be
        <= 1); one RNG draw per request, seeded with ``seed``, picks at most one
        fault.  ``methods`` / ``path_contains`` restrict faults to matching
        requests (others are always forwarded and draw nothing).
        """
        for name, p in (("drop", drop), ("error503", error503), ("delay", delay)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        if drop + error503 + delay > 1.0 + 1e-9:
            raise ValueError("drop + error503 + delay must be <= 1")
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        with self._lock:
            self._faults = {"drop": drop, "error503": error503, "delay": delay}
            self._delay_ms = delay_ms
            self._rng = random.Random(seed)
            self._methods = {m.upper() for m in methods} if methods else None
            self._path_contains = path_contains

    def clear_faults(self) -> None:
        """Forward everything from now on."""
        self.set_faults()

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = self._zero_stats()
            self.log.clear()

    @property
    def stats(self) -> dict[str, int]:
        """Snapshot of the counters: requests seen, forwarded, faults per kind, upstream errors."""
        with self._lock:
            return dict(self._stats)

    @property
    def faults_injected(self) -> int:
        s = self.stats
        return s["drop"] + s["error503"] + s["delay"]

    def _choose(self, method: str, path: str) -> str | None:
        with self._lock:
            self._stats["requests"] += 1
            if self._methods is not None and method not in self._methods:
                return None
            if self._path_contains is not None and self._path_contains not in path:
                return None
            if not any(self._faults.values()):
                return None
            r = self._rng.random()
            acc = 0.0
            for kind in FAULT_KINDS:
                acc += self._faults[kind]
                if r < acc:
                    self._stats[kind] += 1
                    return kind
            return None

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    # -- lifecycle ---------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FaultProxy is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FaultProxy":
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        self._server = _Server(("127.0.0.1", 0), self._make_handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"FaultProxy:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open client connection. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- the handler -------------------------------------------------------
    def _rewrite_location(self, value: str) -> str:
        if self._server is None:
            return value
        for base in (self.upstream, f"http://{self._up_host}:{self._up_port}"):
            if value.startswith(base):
                return self.url + value[len(base):]
        return value

    def _make_handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive
            timeout = proxy.idle_timeout  # idle keep-alive connections end
            server_version = "FaultProxy"

            def setup(self):
                super().setup()
                with proxy._lock:
                    proxy._conns.add(self.connection)

            def finish(self):
                try:
                    super().finish()
                finally:
                    with proxy._lock:
                        proxy._conns.discard(self.connection)

            def log_message(self, format, *args):  # quiet
                pass

            def _read_body(self) -> bytes | None:
                te = self.headers.get("Transfer-Encoding", "")
                if "chunked" in te.lower():
                    return self._read_chunked()
                length = self.headers.get("Content-Length")
                if length is None:
                    return None
                n = int(length)
                if n < 0:
                    raise ValueError("negative Content-Length")
                data = self.rfile.read(n)
                if len(data) != n:
                    raise ConnectionError("client closed before sending the whole body")
                return data

            def _read_chunked(self) -> bytes:
                parts = []
                while True:
                    line = self.rfile.readline(65537)
                    if not line:
                        raise ConnectionError("client closed inside a chunked body")
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        # trailers, up to the empty line
                        while True:
                            t = self.rfile.readline(65537)
                            if t in (b"\r\n", b"\n", b""):
                                break
                        return b"".join(parts)
                    chunk = self.rfile.read(size)
                    if len(chunk) != size:
                        raise ConnectionError("client closed inside a chunk")
                    parts.append(chunk)
                    self.rfile.readline(3)  # CRLF after the chunk

            def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, keep_length: str | None = None):
                self.send_response_only(status)
                for k, v in headers:
                    self.send_header(k, v)
                if keep_length is not None:  # HEAD: upstream's length, no body
                    self.send_header("Content-Length", keep_length)
                elif status >= 200 and status not in (204, 304):
                    self.send_header("Content-Length", str(len(body)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                try:
                    self.end_headers()
                    if body and self.command != "HEAD":
                        self.wfile.write(body)
                    self.wfile.flush()
                except (ConnectionError, TimeoutError):
                    proxy._count("client_disconnects")
                    self.close_connection = True

            def _handle(self):
                method = self.command
                try:
                    body = self._read_body()
                except (ValueError, ConnectionError, OSError):
                    self.close_connection = True
                    return
                fault = proxy._choose(method, self.path)
                if fault == "drop":
                    proxy.log.append((method, self.path, "drop"))
                    self.close_connection = True
                    try:  # RST-free close, without writing a byte
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if fault == "error503":
                    proxy.log.append((method, self.path, "error503"))
                    payload = json.dumps(
                        {
                            "error": {
                                "code": 503,
                                "message": "FaultProxy: injected 503 Service Unavailable",
                                "errors": [{"reason": "backendError", "message": "injected by FaultProxy"}],
                            }
                        }
                    ).encode()
                    self._send(503, [("Content-Type", "application/json; charset=UTF-8")], payload)
                    return
                if fault == "delay":
                    with proxy._lock:
                        delay_s = proxy._delay_ms / 1000.0
                    time.sleep(delay_s)
                self._forward(method, body, fault)

            def _forward(self, method: str, body: bytes | None, fault: str | None):
                headers = {}
                for k, v in self.headers.items():
                    lk = k.lower()
                    if lk in _HOP_BY_HOP or lk in ("host", "content-length"):
                        continue
                    headers[k] = v
                headers["Host"] = proxy._up_netloc
                if body is not None or method in ("POST", "PUT", "PATCH"):
                    headers["Content-Length"] = str(len(body or b""))
                conn = http.client.HTTPConnection(proxy._up_host, proxy._up_port, timeout=proxy.upstream_timeout)
                try:
                    conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
                    for k, v in headers.items():
                        conn.putheader(k, v)
                    conn.endheaders(body if body else None)
                    resp = conn.getresponse()
                    data = resp.read()
                    status = resp.status
                    out = []
                    length = None
                    for k, v in resp.getheaders():
                        lk = k.lower()
                        if lk == "content-length":
                            length = v
                            continue
                        if lk in _HOP_BY_HOP:
                            continue
                        if lk == "location":
                            v = proxy._rewrite_location(v)
                        out.append((k, v))
                except (OSError, http.client.HTTPException) as exc:
                    proxy._count("upstream_errors")
                    proxy.log.append((method, self.path, f"upstream error: {exc!r}"))
                    payload = json.dumps({"error": {"code": 502, "message": f"FaultProxy: upstream error {exc!r}"}}).encode()
                    self._send(502, [("Content-Type", "application/json")], payload)
                    return
                finally:
                    conn.close()
                proxy._count("forwarded")
                proxy.log.append((method, self.path, f"{status}" + (" (delayed)" if fault == "delay" else "")))
                self._send(status, out, data, keep_length=length if method == "HEAD" else None)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        return Handler

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"FaultProxy({where} -> {self.upstream})"
