#!/usr/bin/env python3
"""schemathesis against a live authority, on one store (sqlite or redis).

Usage: st_run.py BINARY STORE   (STORE: sqlite | redis)

Starts its own authority (and, for redis, its own redis-server on a free
loopback port) in a temporary directory, then runs schemathesis against
authority/openapi.json in two phases, each in positive and negative mode:

1. "refused": the edge credential only, no admin credential. Nothing in
   this phase may change state: every request the generator can build
   without a secret it does not know (a password, a refresh token, an admin
   token) is either refused or read-only. The feed and the versions of a set
   of keys are snapshotted before and after the whole phase and must be equal.
2. "admin": the edge credential and an admin token. Valid admin requests
   legitimately bump keys here, so the phase as a whole may change state.

In both phases the custom check of scripts/api/hooks.py snapshots the state
before every request and after every 4xx answer: a refused request changes
nothing, request by request. Checks: no 5xx, status code, content type,
headers and body schema as documented, negative data rejected, methods not
documented answered 405 with Allow, auth not ignored.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(ROOT, "authority", "openapi.json")
ST = os.environ.get("TOLLGATE_ST", os.path.join(ROOT, ".tools", "schemathesis", "bin", "st"))
EDGE = "schemathesis-edge-credential-0123456789abcdef"
EXAMPLES = os.environ.get("TOLLGATE_ST_EXAMPLES", "10")
SEED = os.environ.get("TOLLGATE_ST_SEED", "")

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
    "refused_requests_change_nothing",
])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(tmp):
    for _ in range(5):
        port = free_port()
        p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "yes", "--appendfsync", "always", "--dir", tmp, "--loglevel", "warning"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline and p.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return p, f"redis://127.0.0.1:{port}/0"
            except OSError:
                time.sleep(0.05)
        p.kill()
        p.wait()
    sys.exit("redis-server did not come up")


def start_authority(binary, store_args, tmp):
    config = os.path.join(tmp, "authority.toml")
    with open(config, "w") as f:
        # Long polls held by a generated `wait` end quickly.
        f.write("feed_max_wait_ms = 200\n")
    env = dict(os.environ, TOLLGATE_EDGE_CREDENTIAL=EDGE, TOLLGATE_LOG="error", NO_COLOR="1")
    env.pop("TOLLGATE_EDGE_CREDENTIAL_PREVIOUS", None)
    env.pop("TOLLGATE_TRUSTED_PROXY_HOPS", None)
    log = open(os.path.join(tmp, "authority.log"), "w")
    p = subprocess.Popen([binary, "--config", config, *store_args, "serve", "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    line = p.stdout.readline().strip()
    prefix = "tollgate-authority listening on "
    if not line.startswith(prefix):
        p.kill()
        sys.exit(f"authority did not start: {line!r}\n{open(log.name).read()}")
    return p, line[len(prefix):]


def request(base, method, path, data=None, bearer=None):
    headers = {}
    if bearer:
        headers["Authorization"] = "Bearer " + bearer
    body = None
    if data is not None:
        body = urllib.parse.urlencode(data).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def claims(token):
    import base64
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def run_phase(name, store, base, tmp, keys, admin_token=None):
    config = os.path.join(tmp, f"st-{name}.toml")
    with open(config, "w") as f:
        f.write(f'[auth.openapi.edgeCredential]\nbearer = "{EDGE}"\n')
        if admin_token:
            f.write(f'[auth.openapi.adminBearer]\nbearer = "{admin_token}"\n')
    counts = os.path.join(tmp, f"counts-{name}.json")
    env = dict(os.environ, SCHEMATHESIS_HOOKS="hooks", PYTHONPATH=HERE, TOLLGATE_ST_BASE=base,
               TOLLGATE_EDGE_CREDENTIAL=EDGE, TOLLGATE_ST_KEYS=json.dumps(keys), TOLLGATE_ST_COUNTS=counts)
    cmd = [ST, "--config-file", config, "run", DOC, "--url", base, "--workers", "1",
           "--max-examples", EXAMPLES, "--checks", CHECKS, "--mode", "all",
           "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
           "--request-timeout", "20", "--no-color", "--suppress-health-check", "all",
           "--report", "junit", "--report-junit-path", os.path.join(tmp, f"junit-{name}.xml")]
    if SEED:
        cmd += ["--seed", SEED]
    cmd += os.environ.get("TOLLGATE_ST_ARGS", "").split()
    started = time.time()
    rc = subprocess.call(cmd, env=env, cwd=tmp)
    try:
        with open(counts) as f:
            c = json.load(f)
    except OSError:
        c = {}
    print(f"[schemathesis] {store} {name}: exit {rc} in {time.time() - started:.0f} s; "
          f"answers refused (4xx) and checked unchanged: {c.get('refused', 0)}, others: {c.get('accepted', 0)}",
          flush=True)
    return rc


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("sqlite", "redis"):
        sys.exit(__doc__)
    binary, store = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix=f"tollgate-st-{store}-")
    procs = []
    try:
        if store == "redis":
            redis, url = start_redis(tmp)
            procs.append(redis)
            store_args = ["--store", "redis", "--redis-url", url]
        else:
            store_args = ["--store", "sqlite", "--data-dir", os.path.join(tmp, "data")]
        authority, base = start_authority(binary, store_args, tmp)
        procs.append(authority)
        # The admin signs in first, so the address is known to the throttle
        # and the generated password floods cannot lock it out.
        admin = request(base, "POST", "/v1/token",
                        {"grant_type": "password", "username": "admin", "password": "admin-password"})
        alice = request(base, "POST", "/v1/token",
                        {"grant_type": "password", "username": "alice", "password": "alice-password"})
        # Some state for the snapshots to hold: a subject bump (admin API) and
        # a family revoked through RFC 7009.
        request(base, "POST", "/v1/subjects/bob/revoke", bearer=admin["access_token"])
        gone = request(base, "POST", "/v1/token",
                       {"grant_type": "password", "username": "alice", "password": "alice-password"})
        revoke = urllib.request.Request(base + "/v1/revoke", method="POST",
                                        data=urllib.parse.urlencode({"token": gone["refresh_token"]}).encode(),
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        urllib.request.urlopen(revoke, timeout=30).close()
        keys = ["sub:alice", "sub:bob", "sub:admin", "sub:demo-client",
                "sid:" + claims(alice["access_token"])["sid"], "sid:" + claims(admin["access_token"])["sid"],
                "sid:" + claims(gone["access_token"])["sid"]]
        sys.path.insert(0, HERE)
        os.environ.update(TOLLGATE_ST_BASE=base, TOLLGATE_EDGE_CREDENTIAL=EDGE, TOLLGATE_ST_KEYS=json.dumps(keys))
        import hooks  # noqa: E402  (the snapshot, one definition)

        before = hooks.snapshot()
        assert len(before["entries"]) == 2, before
        rc = run_phase("refused", store, base, tmp, keys)
        after = hooks.snapshot()
        if after != before:
            print(f"[schemathesis] {store}: the refused phase changed the store\nbefore: {before}\nafter:  {after}")
            rc = rc or 1
        else:
            print(f"[schemathesis] {store}: feed and versions unchanged across the refused phase "
                  f"({len(before['entries'])} entries, {len(keys)} keys)", flush=True)
        rc = run_phase("admin", store, base, tmp, keys, admin["access_token"]) or rc
        if authority.poll() is not None:
            print(f"[schemathesis] {store}: the authority exited ({authority.returncode})")
            rc = rc or 1
        if rc:
            print(f"[schemathesis] {store}: FAILED; authority log: {tmp}/authority.log")
        return rc
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if os.environ.get("TOLLGATE_ST_KEEP") != "1" and not locals().get("rc"):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
