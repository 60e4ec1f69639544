"""Stateful schema fuzz: schemathesis's state machine over the admin API (keys, tenants) and
the Files API, never a 5xx.

The stateless fuzz (test_schema_fuzz.py) sends each operation alone, so a key id, a tenant
name or a file id it sends is almost never one that exists: a 404. Here OpenAPI links
(added to a copy of the gateway's schema; FastAPI writes none) chain the calls: a created
key is read, patched, rotated, revoked and then used again; a tenant is read and patched;
an uploaded file is listed, read, deleted and read again. Runs against the same kind of
process as the stateless fuzz (the real app around the fake engine, a SQLite ledger).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.errors import Flaky
from schemathesis.config import SchemathesisConfig

from engine.fake import FakeEngine
from gateway.app import create_app
from tests.conftest import ADMIN_KEY, MODEL, fake_state
from tests.gateway.fake_gateway_process import start_fake_gateway

PATHS = ("/admin/keys", "/admin/tenants", "/v1/files")
SCENARIOS = 60
STEPS_PER_SCENARIO = 8
MIN_CALLS = 200  # fewer: the run stopped early and fuzzed little
# Reached through links at least once each, or the links did not work (a vacuous pass).
MUST_SUCCEED = frozenset({
    ("GET", "/admin/keys/{key_id}"), ("PATCH", "/admin/keys/{key_id}"),
    ("POST", "/admin/keys/{key_id}/rotate"), ("DELETE", "/admin/keys/{key_id}"),
    ("GET", "/admin/tenants/{name}"), ("GET", "/v1/files/{file_id}"),
    ("GET", "/v1/files/{file_id}/content"), ("DELETE", "/v1/files/{file_id}"),
})
Json = dict[str, Any]
TENANT_NAME = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def _ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _links(targets: dict[str, tuple[str, str]], parameters: Json) -> Json:
    """OpenAPI links named by ``targets`` (name -> (path, method)), all with ``parameters``."""
    return {name: {"operationRef": _ref(path, method), "parameters": parameters}
            for name, (path, method) in targets.items()}


KEY = "/admin/keys/{key_id}"
TENANT = "/admin/tenants/{name}"
FILE = "/v1/files/{file_id}"
KEY_OPS = {"GetKey": (KEY, "get"), "PatchKey": (KEY, "patch"),
           "RotateKey": (KEY + "/rotate", "post"), "RevokeKey": (KEY, "delete")}
TENANT_OPS = {"GetTenant": (TENANT, "get"), "PatchTenant": (TENANT, "patch")}
FILE_OPS = {"GetFile": (FILE, "get"), "GetContent": (FILE + "/content", "get"),
            "DeleteFile": (FILE, "delete")}
# (path, method, status) -> links from its response. No links from the list operations:
# what a list holds grows during the run, so a replayed scenario would follow different
# links (Hypothesis calls that flaky data generation).
LINKS: dict[tuple[str, str, str], Json] = {
    ("/admin/keys", "post", "201"): _links(KEY_OPS, {"path.key_id": "$response.body#/id"}),
    (KEY, "patch", "200"): _links(KEY_OPS, {"path.key_id": "$request.path.key_id"}),
    (KEY + "/rotate", "post", "200"): _links(KEY_OPS, {"path.key_id": "$response.body#/id"}),
    (KEY, "delete", "200"): _links(KEY_OPS, {"path.key_id": "$request.path.key_id"}),
    ("/admin/tenants", "post", "201"): _links(TENANT_OPS, {"path.name": "$response.body#/name"}),
    (TENANT, "patch", "200"): _links(TENANT_OPS, {"path.name": "$request.path.name"}),
    ("/v1/files", "post", "200"): _links(FILE_OPS, {"path.file_id": "$response.body#/id"}),
    (FILE, "delete", "200"): _links(FILE_OPS, {"path.file_id": "$request.path.file_id"}),
}


def _linked_openapi() -> Json:
    app = create_app(fake_state(FakeEngine(model_name=MODEL)), manage_engines=False)
    document = copy.deepcopy(app.openapi())
    document["paths"] = {path: item for path, item in document["paths"].items()
                         if path.startswith(PATHS)}
    # The gateway's tenant names (gateway/auth/allowance.py); its schema says any string, so
    # almost no generated tenant would be created and no chain would start from one.
    schemas = document["components"]["schemas"]
    schemas["TenantCreateBody"]["properties"]["name"]["pattern"] = TENANT_NAME
    schemas["KeyCreateBody"]["properties"]["tenant"]["pattern"] = TENANT_NAME
    for (path, method, status), links in LINKS.items():
        responses = document["paths"][path][method]["responses"]
        responses.setdefault(status, {"description": "OK"})["links"] = links
    return document


# Only the links written above (schemathesis's own inference guesses ``key_id`` fields), and
# bodies valid by the schema: a chain goes on only from a created object, and the stateless
# fuzz already sends the invalid ones.
_CONFIG = SchemathesisConfig.from_dict({
    "generation": {"mode": "positive"},
    "phases": {"stateful": {"inference": {"algorithms": []}}}})
schema = schemathesis.openapi.from_dict(_linked_openapi(), config=_CONFIG)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("stateful-fuzz")
    log = folder / "gateway.log"
    process, base = start_fake_gateway(f"sqlite+aiosqlite:///{folder / 'ledger.db'}", log, 0.0)
    try:
        yield base
    finally:
        process.terminate()
        process.wait(timeout=60)
        _no_server_errors_logged(log)


def _no_server_errors_logged(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "unhandled error" not in text and "Traceback" not in text, text[-4000:]


class Calls:
    """Every call the machine made and every problem with its answer. Problems are recorded,
    not raised inside the machine: a failing step would make Hypothesis replay the scenario
    against a server whose state has moved on, and the replay's flakiness would hide it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []
        self.problems: list[str] = []
        self._tenants = 0

    def unique_tenant(self, case: Any) -> None:
        """A tenant name taken earlier is a 409, so a replayed scenario would follow other
        links; each created tenant's name gets a suffix of its own (at most 128 chars)."""
        if case.method == "POST" and case.path == "/admin/tenants" and \
                isinstance(case.body, dict) and isinstance(case.body.get("name"), str):
            self._tenants += 1
            suffix = f"-{self._tenants}"
            case.body = {**case.body, "name": case.body["name"][:128 - len(suffix)] + suffix}

    def check(self, response: Any, case: Any) -> None:
        status = response.status_code
        self.seen.append((case.method, case.path, status))
        if status < 400:
            return  # a file's content is whatever bytes were uploaded
        text = response.content.decode("utf-8", errors="replace")
        described = (f"{case.method} {case.formatted_path} {case.body!r:.300} -> {status} "
                     f"{text:.300}")
        if status >= 500:
            self.problems.append(described)
            return
        try:
            error = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            error = None
        if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
            self.problems.append(f"no error envelope: {described}")


@pytest.mark.slow
def test_admin_and_files_when_calls_are_chained_by_links_then_never_a_server_error(
    gateway: str,
) -> None:
    calls = Calls()

    class Chained(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            calls.unique_tenant(case)

        def get_call_kwargs(self, case: Any) -> Json:
            return {"base_url": gateway, "timeout": 60,
                    "headers": {"authorization": f"Bearer {ADMIN_KEY}"}}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            calls.check(response, case)

    try:
        Chained.run(settings=settings(
            max_examples=SCENARIOS, stateful_step_count=STEPS_PER_SCENARIO, deadline=None,
            derandomize=True, database=None, suppress_health_check=list(HealthCheck)))
    except Flaky as exc:  # the server's state still steered a replay: keep what ran
        print(f"stateful fuzz stopped early: {type(exc).__name__}")
    counts = Counter(calls.seen)
    print(f"stateful fuzz: {len(calls.seen)} calls: {sorted(counts.items())}")
    assert not calls.problems, "\n".join(calls.problems)
    succeeded = {(method, path) for method, path, status in calls.seen if status < 300}
    assert succeeded >= MUST_SUCCEED, sorted(MUST_SUCCEED - succeeded)
    assert len(calls.seen) >= MIN_CALLS, f"only {len(calls.seen)} calls"
    with httpx.Client(base_url=gateway) as client:  # still serving after the fuzz
        assert client.get("/ready").status_code == 200
