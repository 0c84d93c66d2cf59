"""What every Python upstream of the differential suite answers.

Each handler answers 200 with a JSON description of the request *as the
framework saw it*: the handler the framework routed to, the method and path
it reports, and every value of the identity headers (and of the header-pair
user header) that an application could read, once through the framework's
idiomatic API and once through the raw server interface (WSGI environ, ASGI
scope), so a header spelled `x_tollgate_sub` that a server folds into
`X-Tollgate-Sub` shows up. The same JSON also travels base64-encoded in the
`X-Upstream-Saw` response header, so a HEAD request (no body) is observable.
"""

import base64
import json
import socket
import sys

# The headers an application trusts because the edge writes them: the
# filter's identity headers and the header pair's user header.
IDENTITY = ("x-tollgate-sub", "x-tollgate-scope", "x-tollgate-sid", "x-tollgate-ver")
TOKEN_USER = "token-user"
WATCHED = IDENTITY + (TOKEN_USER,)


def fold(name):
    """The spelling-insensitive form of a header name: ASCII case and `_`/`-`."""
    return name.lower().replace("_", "-")


def describe(framework, handler, method, path, raw_path, reads, status=200):
    """The description; `reads` is a list of (via, header, value)."""
    return {
        "framework": framework,
        "handler": handler,
        "status": status,
        "method": method,
        "path": path,
        "raw_path": raw_path,
        "reads": [{"via": via, "header": h, "value": v} for via, h, v in reads],
    }


def encode_header(description):
    return base64.urlsafe_b64encode(json.dumps(description, sort_keys=True).encode()).rstrip(b"=").decode("ascii")


def bind_loopback():
    """A listening socket on a free loopback port (the kernel chooses)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def announce(port):
    """Tells the test harness (first line of stdout) where we listen."""
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
