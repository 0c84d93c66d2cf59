"""Starlette on uvicorn (h11 HTTP/1.1 parser): `python starlette_app.py`.

Routing is Starlette's default: case-sensitive, `redirect_slashes` (a path
with a trailing slash the routes lack is redirected). uvicorn percent-decodes
the path into `scope["path"]` (so `%2F` becomes `/`) and keeps the bytes as
sent in `scope["raw_path"]`.

Prints `PORT <n>` on stdout once it listens on a free loopback port.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from common import WATCHED, announce, bind_loopback, describe, encode_header, fold  # noqa: E402

FRAMEWORK = "starlette/uvicorn"
WRITES = ["POST", "PUT", "PATCH", "DELETE"]


def reads(request):
    out = []
    for h in WATCHED:
        for v in request.headers.getlist(h):
            out.append(("request.headers", h, v))
    # Raw ASGI: every header whose name folds to a watched one.
    for name, value in request.scope["headers"]:
        n = name.decode("latin-1")
        if fold(n) in WATCHED:
            out.append((f"scope.headers[{n}]", fold(n), value.decode("latin-1")))
    return out


def answer(request, handler, status=200):
    raw = request.scope.get("raw_path", b"").decode("latin-1")
    if request.scope.get("query_string"):
        raw += "?" + request.scope["query_string"].decode("latin-1")
    d = describe(FRAMEWORK, handler, request.method, request.url.path, raw, reads(request), status)
    return JSONResponse(d, status_code=status, headers={"X-Upstream-Saw": encode_header(d)})


async def admin(request):
    return answer(request, "admin")


async def read(request):
    return answer(request, "read")


async def write(request):
    return answer(request, "write")


async def public(request):
    return answer(request, "public")


async def no_handler(request, exc):
    return answer(request, "none", exc.status_code)


app = Starlette(
    routes=[
        Route("/admin", admin, methods=["GET"]),
        Route("/admin/users", admin, methods=["GET"]),
        Route("/api/notes", read, methods=["GET"]),
        Route("/api/notes", write, methods=WRITES),
        Route("/api/notes/{note}", read, methods=["GET"]),
        Route("/api/notes/{note}", write, methods=WRITES),
        Route("/public/{rest:path}", public, methods=["GET"]),
    ],
    exception_handlers={404: no_handler, 405: no_handler},
)


if __name__ == "__main__":
    sock = bind_loopback()
    config = uvicorn.Config(app, http="h11", lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    announce(sock.getsockname()[1])
    server.run(sockets=[sock])
