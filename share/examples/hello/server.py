"""The demo app: answers every request with a greeting. Standard library only."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"Hello from piku! This is the app '{os.environ.get('APP', 'hello')}'.\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    address = os.environ.get("BIND_ADDRESS", "127.0.0.1")
    port = int(os.environ["PORT"])
    print(f"hello: listening on {address}:{port}", flush=True)
    ThreadingHTTPServer((address, port), Hello).serve_forever()
