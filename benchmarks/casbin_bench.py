"""pycasbin on the same problem: RBAC with domains.

The RBAC part of the collaboration dataset maps onto casbin's RBAC-with-domains model
(domain = organization): team membership and nested teams become role links
``g(user_or_inner_team, team, org)``; organization owners and admins hold the role
``admin@org``; an app grant becomes policies ``p(subject, org, app, action)`` with the
implied lower levels spelled out (Can Manage => manage, edit, run), which is the fastest
faithful encoding (no action hierarchy evaluated at check time). Custom roles with their
organization-membership intersection, published apps and link sharing have no direct casbin
counterpart and are left out; the queries compared are the ones whose answer comes from the
mapped part (direct, deep_team, org_admin, denied_outsider, denied_member), and casbin's
answers are checked against the expected ones.

pycasbin scans the policies on every enforce, so it is capped: it is loaded at the sizes
given (default up to 100k relationships) and timed for a bounded number of checks.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from benchmarks.common import summarize, write_result
from benchmarks.dataset import generate, size_label

MODEL = """
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.dom == p.dom && r.obj == p.obj && r.act == p.act && g(r.sub, p.sub, r.dom)
"""

KINDS = ("direct", "deep_team", "org_admin", "denied_outsider", "denied_member")
_ACTION = {"run": "run", "edit": "edit", "manage": "manage"}


def run(size: int, seed: int, *, budget: float = 5.0, max_checks: int = 2000) -> dict[str, Any]:
    """Load the RBAC part of the dataset into pycasbin and time enforce()."""
    import casbin
    from casbin.model import Model

    logging.getLogger("casbin").setLevel(logging.WARNING)
    data = generate(size, seed)
    model = Model()
    model.load_model_from_text(MODEL)
    enforcer = casbin.Enforcer(model, enable_log=False)
    t0 = time.perf_counter()
    enforcer.add_policies([list(g) for g in data.casbin_grants])
    enforcer.add_grouping_policies([[sub, role, dom] for dom, sub, role in data.casbin_links])
    load_seconds = time.perf_counter() - t0
    org_of = {}
    for _sub, dom, obj, _act in data.casbin_grants:
        org_of[obj] = dom
    checks = [c for kind in KINDS for c in data.checks[kind][:200]]
    wrong = 0
    samples: list[int] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for c in checks[:max_checks]:
        t = clock()
        answer = enforcer.enforce(c[4], org_of[c[1]], c[1], _ACTION[c[2]])
        samples.append(clock() - t)
        wrong += int(bool(answer) != c[6])
        if time.perf_counter() - start > budget:
            break
    lat = summarize(samples, time.perf_counter() - start)
    result = {
        "size": size,
        "size_label": size_label(size),
        "grants": len(data.casbin_grants),
        "links": len(data.casbin_links),
        "load_seconds": round(load_seconds, 3),
        "answers_wrong": wrong,
        "enforce": lat.as_dict(),
    }
    print(
        f"== pycasbin, {size_label(size)}: {len(data.casbin_grants)} policies + "
        f"{len(data.casbin_links)} links "
        f"loaded in {load_seconds:.2f} s; enforce {lat.throughput:.0f}/s, p50 {lat.p50_us:.0f} us, "
        f"p99 {lat.p99_us:.0f} us ({lat.count} checks, {wrong} wrong)"
    )
    write_result(f"casbin-{size_label(size)}", result)
    return result
