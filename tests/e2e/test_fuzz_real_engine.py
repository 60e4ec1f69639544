"""Property-based fuzz of the OpenAI surface on the real engine (vLLM CPU, SmolLM2 and
all-MiniLM-L6-v2, the shared session gateway).

The schema fuzz (tests/gateway/http/test_schema_fuzz.py) drives the fake engine with
random members of the OpenAPI types: it never reaches vLLM's own validation and rarely
sends what breaks it. Here each body is a small valid request (1-4 tokens) with hostile
changes aimed at each field's hard cases (tests/e2e/hostile): Unicode digits as token
ids, huge and non-finite numbers, deep and ``$ref``-cyclic schemas, pathological regexes,
lone surrogates, unknown content parts, tools that name nothing, ids past the vocabulary.
The bodies that broke the gateway before (tests/e2e/hostile/known.py) go first each run.

Every answer must be: never a 5xx; a 4xx in the OpenAI error envelope naming the field
(``param``); a 200 a whole answer. After each run a plain request still answers 200 and
the ledger holds exactly one settled row per accepted request. All problems of a run are
collected and reported together (no shrinking: every example is a request to the engine).
Hypothesis runs derandomized with a fixed number of examples per endpoint, so CI sends
the same bodies every time.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveGateway
from tests.e2e.hostile.batches import (
    batch_problems,
    create_batch,
    line_body,
    refused_lines,
    result_lines,
    wait_batch,
)
from tests.e2e.hostile.bodies import completion_bodies, embedding_bodies, response_bodies
from tests.e2e.hostile.changes import EMBEDDER, Json
from tests.e2e.hostile.chat import chat_bodies
from tests.e2e.hostile.known import (
    chat_known,
    completion_known,
    embedding_known,
    response_known,
)
from tests.e2e.hostile.ledger import ledger_problems, settled_rows
from tests.e2e.hostile.probe import (
    Exchange,
    Prober,
    envelope_problems,
    problems,
    server_errors,
)

pytestmark = [pytest.mark.engine, pytest.mark.slow]

# Examples per endpoint: about 3 minutes in all on a 2-core box (most bodies are refused
# in milliseconds; an accepted one generates at most 4 tokens).
EXAMPLES = {"chat": 200, "completions": 150, "responses": 100, "embeddings": 150}
BATCH_LINES = {"/v1/chat/completions": 16, "/v1/completions": 8, "/v1/embeddings": 8}
BATCH_TIMEOUT_S = 240.0
ENGINE_DOWN_AFTER = 5  # answers in a row with no answer or a 503: stop sending


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=list(HealthCheck))


class Fuzz:
    """A key of a tenant of its own (its ledger rows are this fuzz's alone)."""

    def __init__(self, gateway: LiveGateway) -> None:
        self.gateway = gateway
        self.tenant = f"fuzz-{uuid.uuid4().hex[:8]}"
        created = httpx.post(f"{gateway.base_url}/admin/keys", headers=gateway.admin_headers(),
                             json={"tenant": self.tenant})
        created.raise_for_status()
        self.key: str = created.json()["key"]
        self.prober = Prober(gateway, self.key)

    def run(self, path: str, bodies: st.SearchStrategy[Json], examples: int,
            known: list[Json]) -> list[Exchange]:
        """``known`` bodies first, then ``examples`` generated ones."""
        sent: list[Exchange] = []

        def send(body: Json) -> None:
            sent.append(self.prober.post(path, body))
            last = sent[-ENGINE_DOWN_AFTER:]
            if len(last) == ENGINE_DOWN_AFTER and all(e.status in (0, 503) for e in last):
                raise AssertionError("the engine stopped answering:\n" +
                                     "\n".join(e.describe() for e in last))

        test = given(body=bodies)(send)
        for body in reversed(known):
            test = example(body=body)(test)
        fuzz_settings(examples)(test)()
        statuses = Counter(e.status for e in sent)
        slowest = max(sent, key=lambda e: e.elapsed_s)
        print(f"{path}: {len(sent)} examples ran ({len(known)} known, the rest generated) in "
              f"{sum(e.elapsed_s for e in sent):.0f} s, statuses "
              f"{dict(sorted(statuses.items()))}; slowest {slowest.elapsed_s:.1f} s: "
              f"{slowest.body[:200]}")
        return sent

    def verdict(self, sent: list[Exchange], health: list[tuple[str, Json]]) -> None:
        """Every answer judged, the engine still serving, the ledger exact."""
        found = [f"{problem}\n{e.describe()}" for e in sent for problem in problems(e)]
        checks = [self.prober.post(path, body) for path, body in health]
        found += [f"engine unhealthy after the fuzz:\n{after.describe()}"
                  for after in checks if after.status != 200]
        found += ledger_problems(settled_rows(self.gateway, self.tenant), sent + checks)
        report(self.gateway, found)


def report(gateway: LiveGateway, found: list[str]) -> None:
    """Fail with every problem, and the gateway log's last unhandled errors."""
    logged = "\n".join(server_errors(gateway.log_path))
    assert not found, (f"{len(found)} problems:\n\n" + "\n\n".join(found) +
                       f"\n\ngateway log, last unhandled errors:\n{logged}")


@pytest.fixture
def fuzz(live_gateway: LiveGateway) -> Iterator[Fuzz]:
    made = Fuzz(live_gateway)
    yield made
    made.prober.close()


def _plain_chat(model: str) -> tuple[str, Json]:
    return "/v1/chat/completions", {"model": model, "max_tokens": 2,
                                    "messages": [{"role": "user", "content": "Say hi."}]}


def test_chat_when_fuzzed_then_4xx_naming_the_field_or_200_and_exact_ledger(
    fuzz: Fuzz, live_gateway: LiveGateway,
) -> None:
    sent = fuzz.run("/v1/chat/completions", chat_bodies(live_gateway.model), EXAMPLES["chat"],
                    chat_known(live_gateway.model))
    fuzz.verdict(sent, [_plain_chat(live_gateway.model)])


def test_completions_when_fuzzed_then_4xx_naming_the_field_or_200_and_exact_ledger(
    fuzz: Fuzz, live_gateway: LiveGateway,
) -> None:
    sent = fuzz.run("/v1/completions", completion_bodies(live_gateway.model),
                    EXAMPLES["completions"], completion_known(live_gateway.model))
    fuzz.verdict(sent, [("/v1/completions", {"model": live_gateway.model, "prompt": "Hi",
                                             "max_tokens": 2})])


def test_responses_when_fuzzed_then_4xx_naming_the_field_or_200_and_exact_ledger(
    fuzz: Fuzz, live_gateway: LiveGateway,
) -> None:
    sent = fuzz.run("/v1/responses", response_bodies(live_gateway.model), EXAMPLES["responses"],
                    response_known(live_gateway.model))
    fuzz.verdict(sent, [("/v1/responses", {"model": live_gateway.model, "input": "Say hi.",
                                           "max_output_tokens": 2})])


def test_embeddings_when_fuzzed_then_4xx_naming_the_field_or_200_and_exact_ledger(
    fuzz: Fuzz,
) -> None:
    sent = fuzz.run("/v1/embeddings", embedding_bodies(), EXAMPLES["embeddings"],
                    embedding_known())
    fuzz.verdict(sent, [("/v1/embeddings", {"model": EMBEDDER, "input": "hello"})])


# ---- batch lines ------------------------------------------------------------------


def _collect(bodies: st.SearchStrategy[Json], count: int) -> list[Json]:
    """``count`` bodies as the fuzz draws them (derandomized), sent as one batch."""
    drawn: list[Json] = []

    @fuzz_settings(count)
    @given(body=bodies)
    def keep(body: Json) -> None:
        drawn.append(body)

    keep()
    return drawn


def _submit(client: httpx.Client, endpoint: str,
            bodies: list[Json]) -> tuple[str, list[Json], list[str]]:
    """(the batch that runs, its bodies, problems). Lines past the JSON bounds (nesting,
    NaN, lone surrogates) fail the whole file at validation, each named: the rest is sent
    again as a batch of its own, which must then run."""
    batch = create_batch(client, endpoint, bodies)
    refused, found = refused_lines(batch, len(bodies))
    if refused:
        print(f"batch {endpoint}: {len(refused)} of {len(bodies)} lines refused at validation")
        bodies = [b for i, b in enumerate(bodies) if i not in refused]
        batch = create_batch(client, endpoint, bodies)
        again, problems = refused_lines(batch, len(bodies))
        found += problems + ([f"{endpoint}: lines the first refusal did not name were "
                              f"refused next: {sorted(again)}"] if again else [])
    return str(batch["id"]), bodies, found


def test_batch_lines_when_fuzzed_then_each_answers_or_fails_cleanly_and_exact_ledger(
    fuzz: Fuzz, live_gateway: LiveGateway,
) -> None:
    model = live_gateway.model
    generated: dict[str, Callable[[], st.SearchStrategy[Json]]] = {
        "/v1/chat/completions": lambda: chat_bodies(model),
        "/v1/completions": lambda: completion_bodies(model), "/v1/embeddings": embedding_bodies}
    known = {"/v1/chat/completions": chat_known(model),
             "/v1/completions": completion_known(model), "/v1/embeddings": embedding_known()}
    found: list[str] = []
    sent: list[Exchange] = []
    with httpx.Client(base_url=live_gateway.base_url, timeout=60,
                      headers={"authorization": f"Bearer {fuzz.key}"}) as client:
        submitted = {}
        for endpoint, count in BATCH_LINES.items():
            drawn = known[endpoint] + _collect(generated[endpoint](), count)
            lines_model = EMBEDDER if endpoint == "/v1/embeddings" else model
            batch_id, bodies, problems = _submit(client, endpoint,
                                                 [line_body(b, lines_model) for b in drawn])
            submitted[endpoint] = (batch_id, bodies)
            found += problems
        deadline = time.monotonic() + BATCH_TIMEOUT_S
        for endpoint, (batch_id, bodies) in submitted.items():
            batch = wait_batch(client, batch_id, deadline)
            lines, exchanges = batch_problems(endpoint, bodies, batch,
                                              result_lines(client, batch))
            found += lines
            sent += exchanges
            print(f"batch {endpoint}: {len(bodies)} lines ran, statuses "
                  f"{dict(Counter(e.status for e in exchanges))}")
    found += ledger_problems(settled_rows(live_gateway, fuzz.tenant), sent)
    report(live_gateway, found)


# ---- bodies that are not JSON objects -----------------------------------------------

RAW_BODIES: dict[str, bytes] = {
    "truncated": b'{"model": "m", "messages": [',
    "deep arrays": b"[" * 100_000 + b"]" * 100_000,
    "deep objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "invalid UTF-8": b'{"model": "\xff\xfe", "input": "\xc3\x28"}',
    "UTF-16 with BOM": '{"model": "m"}'.encode("utf-16"),
    "a list": b"[]", "a string": b'"x"', "NaN": b"NaN", "null": b"null", "empty": b"",
    "huge number": b'{"model": "m", "max_tokens": 1e999, "max_output_tokens": 1e999}',
    "NUL bytes": b'{"model": "m\x00", "input": "\x00"}',
}
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings")


@pytest.mark.parametrize("name", sorted(RAW_BODIES))
def test_raw_body_when_not_a_json_object_then_4xx_envelope_on_every_endpoint(
    fuzz: Fuzz, name: str,
) -> None:
    found = []
    for path in ENDPOINTS:
        response = fuzz.prober.client.post(path, content=RAW_BODIES[name])
        if response.status_code >= 500 or response.status_code < 400:
            found.append(f"{path}: {response.status_code} {response.text[:300]}")
        else:
            found += [f"{path}: {p}" for p in envelope_problems(
                response.status_code, response.text, field_problem=False)]
    assert not found, "\n".join(found)
