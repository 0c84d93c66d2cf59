"""Schemathesis hooks for scripts/api/st_run.py: a custom check that
every refused request (any 4xx answer) left the store as it was.

Before each call the state is snapshotted (the feed from scratch and the
versions of a set of keys, both with the edge credential); the check
snapshots again after the answer and compares. The run uses one worker, so
nothing else happens between the two snapshots.
"""

import json
import os
import urllib.request

import schemathesis

BASE = os.environ["TOLLGATE_ST_BASE"]
EDGE = os.environ["TOLLGATE_EDGE_CREDENTIAL"]
KEYS = json.loads(os.environ["TOLLGATE_ST_KEYS"])
COUNTS = os.environ.get("TOLLGATE_ST_COUNTS")


def _get(path):
    req = urllib.request.Request(BASE + path, headers={"Authorization": "Bearer " + EDGE})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def snapshot():
    """The store as the edge sees it: every live feed entry, the high-water
    cursor, the store id and floor, and the minimum of each key."""
    feed = _get("/v1/revocations")
    entries = sorted((e["key"], e["min_ver"], e["expires_at"]) for e in feed["entries"])
    query = "&".join("key=" + urllib.request.quote(k, safe=":") for k in KEYS)
    versions = _get("/v1/versions?" + query)["versions"]
    return {"cursor": feed["cursor"], "store": feed["store"], "floor": feed["floor"],
            "entries": entries, "versions": versions}


_before = {}
_counts = {"refused": 0, "accepted": 0}


@schemathesis.hook
def before_call(context, case, kwargs):
    _before[id(case)] = snapshot()


@schemathesis.check
def refused_requests_change_nothing(ctx, response, case):
    """A request answered 4xx changes neither the feed nor any version."""
    before = _before.get(id(case))
    if before is None:
        return None
    if 400 <= response.status_code < 500:
        _counts["refused"] += 1
        after = snapshot()
        if after != before:
            raise AssertionError(
                f"a refused request ({response.status_code}) changed the store:\n"
                f"before: {json.dumps(before)}\nafter:  {json.dumps(after)}")
    else:
        _counts["accepted"] += 1
    if COUNTS:
        with open(COUNTS, "w") as f:
            json.dump(_counts, f)
    return None
