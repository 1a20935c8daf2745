"""Serving a fake's HTTP handler on 127.0.0.1 in a daemon thread: one way for every in-process fake.

The fakes (Vertex AI, SageMaker, Kubernetes) each bind their request handler
class to the fake instance (the handler reads it as ``self.fake``) and serve
it on loopback only; no other network traffic is made.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(handler: type[BaseHTTPRequestHandler], fake: object, name: str, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``handler`` bound to ``fake`` on 127.0.0.1:``port`` (0: a free one): the server and its URL."""
    bound = type("_BoundHandler", (handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", port), bound)
    server.daemon_threads = True
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"{name}-{port}",
                     daemon=True).start()
    return server, f"http://127.0.0.1:{port}"


def stop_serving(server: ThreadingHTTPServer | None) -> None:
    """Stop ``server``'s loop (its thread then ends) and close its socket."""
    if server is not None:
        server.shutdown()
        server.server_close()
