"""Schemathesis hooks for scripts/fuzz-api (loaded through SCHEMATHESIS_HOOKS).

Two things on top of schemathesis's own `not_a_server_error` check:

* `filter_failure` keeps every 5xx except the ones Docker's daemon itself answers with a
  5xx: 503 "This node is already part of a swarm" / "not a swarm manager" (moby's
  errdefs.Unavailable), and the 501 swarmd gives for engine-only calls (local networks,
  connect, prune) on a node that runs tasks as host processes and has no engine to ask.
  Anything else >= 500 stays a failure.
* `refused_request_changes_nothing`: before each mutating call the swarm's objects (the IDs
  and specs of the swarm, nodes, services, secrets, configs and swarm networks, and the join
  tokens) are read; after a 4xx answer they are read again and must be identical. Calls run
  one at a time (`--workers 1`), so nothing else changes them in between.
"""

import json
import os

import requests
import schemathesis

API = os.environ["FUZZ_API_URL"]  # e.g. http://127.0.0.1:23750/v1.50

# 5xx texts the daemon answers with too (not bugs): matched as substrings of "message".
DOCKER_5XX = {
    503: (
        "This node is already part of a swarm",
        "This node is not a swarm manager",
        "This node is not part of a swarm",
    ),
    501: ("has no Docker Engine", "need a Docker Engine"),
}

MUTATING = {"POST", "PUT", "DELETE", "PATCH"}

_before = {}


def _message(response):
    try:
        return json.loads(response.content or b"{}").get("message", "")
    except (ValueError, AttributeError):
        return ""


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    allowed = DOCKER_5XX.get(response.status_code, ())
    msg = _message(response)
    return not any(a in msg for a in allowed)


def _get(path):
    r = requests.get(API + path, timeout=10)
    if r.status_code != 200:
        return {"status": r.status_code}
    return r.json()


def snapshot():
    """IDs and specs of every swarm object. Versions and status are left out: a rolling update
    started by an earlier (accepted) call, or a node's heartbeat, moves them on its own."""
    out = {}
    sw = _get("/swarm")
    out["swarm"] = (sw.get("Spec"), sw.get("JoinTokens"))
    for kind in ("nodes", "services", "secrets", "configs"):
        objs = _get("/" + kind)
        if isinstance(objs, dict):
            out[kind] = objs
            continue
        out[kind] = sorted(
            (o.get("ID"), json.dumps(o.get("Spec"), sort_keys=True))
            for o in objs
        )
    nets = _get("/networks")
    if isinstance(nets, list):
        out["networks"] = sorted(
            json.dumps({k: v for k, v in n.items() if k != "Containers"}, sort_keys=True)
            for n in nets
            if n.get("Scope") == "swarm"
        )
    return out


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.method.upper() in MUTATING:
        _before[id(case)] = snapshot()


@schemathesis.check
def refused_request_changes_nothing(ctx, response, case):
    before = _before.pop(id(case), None)
    if before is None or not (400 <= response.status_code < 500):
        return None
    after = snapshot()
    changed = [k for k in before if before[k] != after.get(k)]
    if changed:
        raise AssertionError(
            f"{case.method} {case.path} was refused with {response.status_code} "
            f"({_message(response)!r}) but changed: {', '.join(changed)}"
        )
    return None
