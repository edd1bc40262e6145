"""A tiny upstream that answers every request with the request's method, path and headers as JSON, so tests see
exactly what Caddy passed through (identity headers included)."""
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def _answer(self):
        body = json.dumps({"method": self.command, "path": self.path,
                           "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", 8080), Echo).serve_forever()
