"""The replica stream reader (engine/remote.py ``_payloads``): SSE ``data:`` payloads from
raw bytes, however the network splits them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from engine.remote import _Open, _payloads


class _Parts(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes]) -> None:
        self._parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            yield part


async def payloads(*parts: bytes) -> list[bytes]:
    response = httpx.Response(200, stream=_Parts(list(parts)))
    return [data async for data in _payloads(response, _Open())]


async def test_payloads_split_anywhere_then_each_data_line_once_until_done() -> None:
    stream = (b'data: {"a": 1}\n\n: a comment\n\ndata:{"b": "x\\ny"}\r\n\r\n'
              b"data: [DONE]\n\ndata: 9\n\n")
    whole = await payloads(stream)
    assert whole == [b'{"a": 1}', b'{"b": "x\\ny"}']
    for cut in range(1, len(stream)):
        assert await payloads(stream[:cut], stream[cut:]) == whole
    assert await payloads(*(stream[i:i + 1] for i in range(len(stream)))) == whole


async def test_stream_ending_without_a_newline_then_its_last_line_counts() -> None:
    assert await payloads(b'data: {"a": 1}\n\ndata: {"b": 2}') == [b'{"a": 1}', b'{"b": 2}']
    assert await payloads(b"") == []
