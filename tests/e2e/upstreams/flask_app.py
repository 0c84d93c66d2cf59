"""Flask behind two real WSGI servers: `python flask_app.py werkzeug|wsgiref`.

- `werkzeug`: Werkzeug's development server (`flask run`), threaded. It
  drops request headers whose name contains `_` and joins repeated headers
  with `,`.
- `wsgiref`: the Python standard library's reference WSGI server. It builds
  `HTTP_*` environ keys by upper-casing and replacing `-` with `_`, so
  `x_tollgate_sub` and `X-Tollgate-Sub` land in the same key: the classic
  underscore-folding upstream.

Routing is Flask's default (case-sensitive, `strict_slashes`). The app also
honours `X-HTTP-Method-Override`, the pattern the Flask documentation gives
for clients that can only send GET and POST ("Adding HTTP Method Overrides"),
written here as a small WSGI middleware.

Prints `PORT <n>` on stdout once it listens on a free loopback port.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from flask import Flask, jsonify, request  # noqa: E402

from common import WATCHED, announce, describe, encode_header, fold  # noqa: E402

SERVER = sys.argv[1] if len(sys.argv) > 1 else "werkzeug"
FRAMEWORK = f"flask/{SERVER}"

app = Flask(__name__)
WRITES = ["POST", "PUT", "PATCH", "DELETE"]


def environ_key(header):
    return "HTTP_" + header.upper().replace("-", "_")


def reads():
    out = []
    for h in WATCHED:
        v = request.headers.get(h)
        if v is not None:
            out.append(("request.headers.get", h, v))
    # Raw WSGI: every HTTP_* key that folds to a watched header.
    for key, v in request.environ.items():
        if key.startswith("HTTP_"):
            h = fold(key[5:])
            if h in WATCHED:
                out.append((f"environ[{key}]", h, v))
    return out


def answer(handler, status=200):
    d = describe(
        FRAMEWORK,
        handler,
        request.method,
        request.path,
        request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path,
        reads(),
        status,
    )
    r = jsonify(d)
    r.status_code = status
    r.headers["X-Upstream-Saw"] = encode_header(d)
    return r


@app.get("/admin")
@app.get("/admin/users")
def admin():
    return answer("admin")


@app.get("/api/notes")
@app.get("/api/notes/<note>")
def read(note=None):
    return answer("read")


@app.route("/api/notes", methods=WRITES)
@app.route("/api/notes/<note>", methods=WRITES)
def write(note=None):
    return answer("write")


@app.get("/public/<path:rest>")
def public(rest):
    return answer("public")


@app.errorhandler(404)
@app.errorhandler(405)
def no_handler(e):
    return answer("none", e.code)


class MethodOverride:
    """Honours `X-HTTP-Method-Override` (Flask documentation pattern)."""

    METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

    def __init__(self, wsgi):
        self.wsgi = wsgi

    def __call__(self, environ, start_response):
        override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE", "").upper()
        if override in self.METHODS:
            environ["REQUEST_METHOD"] = override
        return self.wsgi(environ, start_response)


app.wsgi_app = MethodOverride(app.wsgi_app)


def serve_werkzeug():
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    announce(server.server_port)
    server.serve_forever()


def serve_wsgiref():
    import socketserver
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    class Threaded(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = Threaded(("127.0.0.1", 0), Quiet)
    server.set_app(app)
    announce(server.server_port)
    server.serve_forever()


if __name__ == "__main__":
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    {"werkzeug": serve_werkzeug, "wsgiref": serve_wsgiref}[SERVER]()
