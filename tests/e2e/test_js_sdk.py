"""The official OpenAI JavaScript SDK (npm ``openai``, run by Node) against the real gateway:
the second real client frontends use. scripts/js-client.sh installs it (make test runs it)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from engine.lora.shipped import shipped_adapter
from tests.conftest import LiveGateway
from tests.e2e.test_chat_parity import PERSON, WEATHER

pytestmark = [pytest.mark.engine]
CLIENT = Path(__file__).resolve().parent / "js" / "client.mjs"


def run_js(gateway: LiveGateway, scenario: str, **extra_env: str) -> dict[str, Any]:
    assert (CLIENT.parent / "node_modules" / "openai").is_dir(), "run scripts/js-client.sh"
    env = {**os.environ, "GATEWAY_URL": gateway.v1, "GATEWAY_KEY": gateway.admin_key,
           "GATEWAY_MODEL": gateway.model, **extra_env}
    done = subprocess.run(["node", str(CLIENT), scenario], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_js_stream_when_documentation_loop_reads_choices_zero_then_text_arrives(
    live_gateway: LiveGateway,
) -> None:
    result = run_js(live_gateway, "stream-chat")
    assert "Paris" in result["text"] and result["chunks"] > 2


def test_js_stream_helper_when_tool_required_then_assembles_a_valid_call(
    live_gateway: LiveGateway,
) -> None:
    result = run_js(live_gateway, "stream-tool")
    assert result["finish_reason"] == "tool_calls"
    call = result["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])  # type: ignore[typeddict-item]
    assert result["usage"]["completion_tokens"] > 0


def test_js_json_schema_when_strict_then_content_validates(live_gateway: LiveGateway) -> None:
    result = run_js(live_gateway, "json-schema")
    assert result["finish_reason"] == "stop"
    jsonschema.validate(json.loads(result["content"]), PERSON)


def test_js_responses_stream_when_read_with_the_sdk_helper_then_events_and_final_text(
    live_gateway: LiveGateway,
) -> None:
    result = run_js(live_gateway, "responses-stream")
    assert result["types"][0] == "response.created"
    assert result["types"][-1] in ("response.completed", "response.incomplete")
    assert result["text"] == result["output_text"] and "Paris" in result["text"]
    assert result["usage"]["output_tokens"] > 0


def test_js_adapter_when_used_by_name_then_reasoning_streams_apart_from_content(
    live_gateway: LiveGateway,
) -> None:
    adapter = "think-for-js"  # the shipped think adapter, under a name of this test's own
    with httpx.Client(base_url=live_gateway.base_url, timeout=300) as client:
        registered = client.post("/admin/adapters", headers=live_gateway.admin_headers(), json={
            "name": adapter, "base_model": live_gateway.model, "reasoning_parser": "olmo3",
            "path": str(shipped_adapter("smollm2-135m-think"))})
        assert registered.status_code == 201, registered.text
        whole = client.post(f"{live_gateway.v1}/chat/completions",
                            headers=live_gateway.admin_headers(), json={
                                "model": adapter, "temperature": 0, "max_tokens": 96,
                                "messages": [{"role": "user", "content": "What is 12 + 30?"}]})
    assert whole.status_code == 200, whole.text
    message = whole.json()["choices"][0]["message"]
    result = run_js(live_gateway, "adapter-reasoning", GATEWAY_ADAPTER=adapter)
    assert result["reasoning"] and "<think>" not in result["content"]
    assert (result["reasoning"], result["content"]) == (message["reasoning_content"],
                                                        message["content"])
    details = result["usage"]["completion_tokens_details"]
    assert details["reasoning_tokens"] == whole.json()["usage"]["completion_tokens_details"][
        "reasoning_tokens"] > 0
    assert result["reasoningEvents"] == result["itemText"] == message["reasoning_content"]
    assert result["output_text"] == message["content"]
