"""``json_data``: a streamed chunk's JSON (orjson, falling back to ``json`` for what orjson
refuses), always one line that SSE framing cannot break."""

from __future__ import annotations

import json
from typing import Any

from gateway.serving.formatting.responder import json_data


def test_json_data_when_text_has_newlines_and_data_prefix_then_one_line_that_round_trips() -> None:
    chunk = {"choices": [{"delta": {"content": "a\n\ndata: [DONE]\r\nGrüße 👋"}}]}
    encoded = json_data(chunk)
    assert "\n" not in encoded and "\r" not in encoded
    assert "Grüße 👋" in encoded  # UTF-8 as is, not \\u escapes
    assert json.loads(encoded) == chunk


def test_json_data_when_orjson_refuses_then_the_standard_library_encodes() -> None:
    huge = {"seed": 2**70}  # past 64 bits, e.g. relayed from an upstream
    deep: Any = "leaf"
    for _ in range(300):  # past orjson's 254 levels
        deep = [deep]
    assert json.loads(json_data(huge)) == huge
    assert json.loads(json_data({"deep": deep})) == {"deep": deep}
