"""A threaded HTTP server for test endpoints that does not print a traceback when a client hangs
up mid-answer (tests make clients time out on purpose)."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class QuietHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` that ignores clients closing the connection early."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # BrokenPipe, ConnectionReset: the client left
            return
        super().handle_error(request, client_address)
