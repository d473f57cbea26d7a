"""A stand-in upstream (AI gateway, memory service) for the demo: answers
every request with JSON describing what it received, identity headers included.

usage: echo_upstream.py NAME PORT
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, PORT = sys.argv[1], int(sys.argv[2])


class Echo(BaseHTTPRequestHandler):
    def _answer(self):
        body = json.dumps(
            {
                "upstream": NAME,
                "method": self.command,
                "path": self.path,
                "x-user-id": self.headers.get("x-user-id"),
                "x-user-roles": self.headers.get("x-user-roles"),
                "x-session-id": self.headers.get("x-session-id"),
                # Present only for an app's or a service's token.
                **{
                    h: self.headers.get(h)
                    for h in ("x-client-id", "x-actor-id")
                    if self.headers.get(h)
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Echo).serve_forever()
