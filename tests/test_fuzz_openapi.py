"""Property-based fuzzing of every REST operation, generated from our own /openapi.json.

Schemathesis turns each documented operation into a Hypothesis strategy
(schema-valid and schema-breaking requests alike) and we send them to a real
`droptv-live serve` process on 127.0.0.1 holding the demo world, three ways:
without a token, with a user's token and with an admin token. Every answer
must be a documented status (never a 5xx) whose body matches the documented
schema; errors must be the JSON envelope with `code` equal to the status.

Failures are collected rather than raised, so one run reports every broken
operation at once, each with its smallest failing request as a curl command,
and no time goes into shrinking: the whole file stays well under 90 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import asyncpg
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ServerFactory, ServerProcess, auth
from tests.wsutil import start_watch

# Examples per operation and caller: 30 operations x 3 callers x 40 = 3,600 requests, ~40 s.
EXAMPLES: Final = 40
# A hard stop for the generation loop, whatever the machine's speed (the server start is extra).
BUDGET_SECONDS: Final = 60.0
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Some cases aim path parameters at the demo world, so requests get past "unknown creator".
KNOWN_IDS: Final = {
    "creator_id": "creator_001",
    "channel_id": "ch_101",
    "program_id": "prog_003",
    "content_id": "ep_001",
    "stream_id": "stream_abc123",
}
# Path ids a hostile client sends: NUL (PostgreSQL text cannot hold it), huge, odd Unicode.
# (No "/", "." or empty ids: those address another route, not a hostile value of this one.)
HOSTILE_IDS: Final = st.sampled_from(
    ["x\x00", "\x00", "creator_001\x00", "ch_101\x00", "a" * 4000, "%", "\u202e", "\U0001f4a5"]
) | st.text(st.characters(exclude_characters="/.?#"), min_size=1, max_size=40)
CALLERS: Final[dict[str, dict[str, str]]] = {
    "anonymous": {},
    "user": auth("user_123"),
    "admin": auth("ops", admin=True),
}


@dataclass
class Finding:
    """The smallest failing request seen for one (operation, caller, kind of failure)."""

    operation: str
    caller: str
    kind: str
    status: int
    body: str
    curl: str
    count: int = 1


@dataclass
class Run:
    base: str
    deadline: float
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    requests: int = 0

    def record(self, finding: Finding) -> None:
        key = (finding.operation, finding.caller, finding.kind)
        seen = self.findings.get(key)
        if seen is None or len(finding.curl) < len(seen.curl):
            finding.count += seen.count if seen else 0
            self.findings[key] = finding
        else:
            seen.count += 1

    def report(self) -> str:
        lines = [f"{len(self.findings)} kinds of failure in {self.requests} requests:"]
        for f in sorted(self.findings.values(), key=lambda f: (f.operation, f.caller)):
            lines += [
                f"- {f.operation} as {f.caller}: {f.kind} (x{f.count})",
                f"    -> {f.status} {f.body[:300]}",
                f"    {f.curl}",
            ]
        return "\n".join(lines)


def _envelope_problem(response: requests.Response) -> str | None:
    """Why an error answer is not `{"status":"error","code":<status>,"message":...}`, if it is not."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return "error body is not JSON"
    if not isinstance(body, dict):
        return "error body is not an object"
    if body.get("status") != "error" or body.get("code") != response.status_code:
        return "error envelope status/code do not match the HTTP status"
    if not isinstance(body.get("message"), str) or not body["message"]:
        return "error envelope without a message"
    return None


def _shorten(curl: str) -> str:
    """A reproducer that names the tokens instead of spelling them out."""
    for caller, headers in CALLERS.items():
        if headers:
            curl = curl.replace(headers["Authorization"], f"Bearer ${caller.upper()}_TOKEN")
    return curl


def _kind(group: FailureGroup) -> str:
    return "; ".join(sorted({type(f).__name__ for f in group.exceptions}))


def _probe(
    run: Run, http: requests.Session, caller: str, headers: dict[str, str]
) -> Callable[..., None]:
    """The body of one Hypothesis example: send the case, check the answer, record failures."""

    def probe(case: schemathesis.Case) -> None:
        if time.monotonic() > run.deadline:
            return
        run.requests += 1
        response = case.call(
            base_url=run.base, session=http, headers=headers, timeout=15, allow_redirects=False
        )  # only ever 127.0.0.1
        kind: str | None = None
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            kind = _kind(group)
        kind = kind or _envelope_problem(response)
        if kind is not None:
            run.record(
                Finding(
                    operation=case.operation.label,
                    caller=caller,
                    kind=kind,
                    status=response.status_code,
                    body=response.text,
                    curl=_shorten(case.as_curl_command(headers=headers, base_url=run.base)),
                )
            )

    return probe


def _strategy(
    operation: schemathesis.APIOperation, query: dict[str, Any]
) -> st.SearchStrategy[Any]:
    """Positive and negative cases, with and without the demo world's ids and session."""
    known = {
        name: KNOWN_IDS[name]
        for name in (p.name for p in operation.path_parameters)
        if name in KNOWN_IDS
    }
    takes_session = any(p.name == "session_id" for p in operation.query)
    variants: list[st.SearchStrategy[Any]] = []
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        variants.append(operation.as_strategy(generation_mode=mode))
        if known:
            variants.append(
                operation.as_strategy(
                    generation_mode=mode,
                    path_parameters=known,
                    query=query
                    if takes_session and mode is schemathesis.GenerationMode.POSITIVE
                    else None,
                )
            )
    names = [p.name for p in operation.path_parameters]
    if names:
        hostile = st.fixed_dictionaries({name: HOSTILE_IDS for name in names})
        variants.append(st.tuples(operation.as_strategy(), hostile).map(_with_path))
    return st.one_of(variants)


def _with_path(drawn: tuple[schemathesis.Case, dict[str, str]]) -> schemathesis.Case:
    case, params = drawn
    case.path_parameters = {**(case.path_parameters or {}), **params}
    return case


def fuzz(base: str, doc: dict[str, Any], session_id: str) -> Run:
    """Every operation, as every caller, under one time budget (blocking: run it in a thread)."""
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.output.sanitization.enabled = False  # reproducers need the real session ids
    run = Run(base=base, deadline=time.monotonic() + BUDGET_SECONDS)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Admin last: its writes (offline, deleted programs, rotated keys) would hide paths from the others.
    for caller, headers in CALLERS.items():
        with requests.Session() as http:
            for operation in operations:
                strategy = _strategy(operation, {"session_id": session_id})
                test = given(case=strategy)(_probe(run, http, caller, headers))
                hypothesis.settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                    verbosity=hypothesis.Verbosity.quiet,
                )(test)()
    return run


@pytest.fixture
async def server(start_server: ServerFactory, demo_db: asyncpg.Pool) -> ServerProcess:
    return await start_server()


@pytest.mark.timeout(110)
async def test_every_operation_answers_as_documented(server: ServerProcess) -> None:
    """No 5xx, no undocumented status, no body off its schema, for any caller and any input."""
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/openapi.json") as resp:
            doc = await resp.json()
        session_id = await start_watch(http, server.url)
    started = time.monotonic()
    run = await asyncio.to_thread(fuzz, server.url, doc, session_id)
    elapsed = time.monotonic() - started
    assert run.requests > 1000, f"only {run.requests} requests in {elapsed:.0f} s"
    assert not run.findings, run.report() + "\n\nserver log tail:\n" + server.log()[-4000:]
