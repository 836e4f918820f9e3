"""The same authzed.api.v1 calls against Stonetown and the real SpiceDB (v1.54, embedded).

Each scenario (diff_scenarios.py) starts from an empty store on both sides, writes its schema and
relationships and makes its calls through the authzed messages; every answer is compared:
permissionships (and missing caveat parameters), lookup and read result sets (order-free),
deletion progress and counts, expand trees, and for failures the gRPC status code and the
`authzed.api.v1.ErrorReason` of the ErrorInfo. A call marked `known` (a SpiceDB defect listed
in ../shared/tools/spicedb/README.md or a difference in README's "Coming from SpiceDB") runs on
both sides without its answers being compared.
"""

from __future__ import annotations

from typing import Any

import pytest
from diff_harness import Outcome, SpiceDBSide, StonetownSide, normal, reason_from_spicedb_message
from diff_malformed import MALFORMED
from diff_requests import Call, lookup_resources, lookup_subjects, read, schema, with_cursor
from diff_scenarios import SCENARIOS, Scenario

MAX_PAGES = 50


def answer(side: SpiceDBSide | StonetownSide, call: Call) -> tuple[Any, str]:
    """A side's comparable answer to a call and its error message (not compared); a paged call
    follows its cursors to the end."""
    request = call.request
    if call.cursor_from is not None:
        first = side.call(call.cursor_from.method, call.cursor_from.request)
        assert first.failure is None and first.responses, (side.name, first.failure)
        request = with_cursor(request, first.responses[-1].after_result_cursor)
    outcome = paged(side, call) if call.pages else side.call(call.method, request)
    return normal(call.method, outcome), outcome.failure.message if outcome.failure else ""


def paged(side: SpiceDBSide | StonetownSide, call: Call) -> Outcome:
    """All pages of a call with a limit, as one outcome (or the first failure)."""
    limit = call.request.optional_limit
    collected: list[Any] = []
    request = call.request
    for _ in range(MAX_PAGES):
        outcome = side.call(call.method, request)
        if outcome.failure is not None:
            return outcome
        assert len(outcome.responses) <= limit, f"{side.name}: a page of {len(outcome.responses)} > {limit}"
        collected += outcome.responses
        if len(outcome.responses) < limit:
            break
        request = with_cursor(call.request, outcome.responses[-1].after_result_cursor)
    return Outcome(collected)


@pytest.mark.parametrize("scenario", SCENARIOS + MALFORMED, ids=[s.name for s in SCENARIOS + MALFORMED])
def test_scenario_answers_match_spicedb(
    scenario: Scenario, spicedb: SpiceDBSide, stonetown: StonetownSide
) -> None:
    spicedb.reset()
    stonetown.reset()
    disagreements = []
    compared = 0
    for index, call in enumerate(scenario.calls):
        (theirs, their_message), (ours, our_message) = answer(spicedb, call), answer(stonetown, call)
        if call.known is not None:
            continue
        compared += 1
        if theirs != ours:
            request = str(call.request).replace("\n", " ")[:400]
            disagreements.append(
                f"#{index} {call.method} {request}\n  spicedb:   {theirs} {their_message[:300]}\n"
                f"  stonetown: {ours} {our_message[:300]}"
            )
    assert compared > 0
    assert not disagreements, f"{scenario.name}:\n" + "\n".join(disagreements)


def test_message_reasons_agree_with_spicedb_status_details(spicedb: SpiceDBSide) -> None:
    """The reasons read from FFI messages are the ones SpiceDB's streaming calls attach."""
    spicedb.reset()
    spicedb.call(
        "WriteSchema", schema("definition user {}\ndefinition doc {\n relation viewer: user\n}").request
    )
    streamed = [
        lookup_resources("nodoc", "view", "user:u"),
        lookup_subjects("doc:d", "nope", "user"),
        read(resource_type="nodoc"),
        lookup_resources("doc", "viewer", "user:u", limit=5000),
    ]
    for call in streamed:
        failure = spicedb.call(call.method, call.request).failure
        assert failure is not None and failure.reason is not None, call
        assert reason_from_spicedb_message(failure.message) == failure.reason, failure
