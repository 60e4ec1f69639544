"""The SSE response: sse-starlette's, with its send timeout kept by one timer per response.

sse-starlette bounds every send by ``anyio.move_on_after(send_timeout)``: a cancel scope
entered and left per chunk, a timer armed and cancelled per token. Here each send records
its deadline in a dict (usually one entry: the data send, now and then a ping's), and one
timer per response, when it fires, cancels the task of any send still pending past its
deadline (that send raises ``SendTimeoutError``, as sse-starlette's does) and re-arms
itself at the next deadline. The same bound, without a cancel scope per chunk.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Send


class _SendDeadlines:
    """Sends in flight and their deadlines, watched by one timer."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._pending: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def send(self, send: Send, message: Message) -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        self._pending[task] = deadline
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._check)
        try:
            await send(message)
        except asyncio.CancelledError:
            if task not in self._expired or task.uncancel() > 0:
                raise  # cancelled from outside as well: a cancellation, not a timeout
            raise SendTimeoutError() from None
        finally:
            del self._pending[task]
            self._expired.discard(task)

    def _check(self) -> None:
        self._timer = None
        if not self._pending:
            return  # nothing in flight: the next send arms the timer again
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, deadline in self._pending.items():
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        waiting = [d for t, d in self._pending.items() if t not in self._expired]
        if waiting:
            self._timer = loop.call_at(min(waiting), self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class StreamResponse(EventSourceResponse):
    """``EventSourceResponse`` whose ``send_timeout`` costs no cancel scope per send."""

    def __init__(self, content: Any, *, send_timeout: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(content, send_timeout=send_timeout, **kwargs)
        self._deadlines = None if send_timeout is None else _SendDeadlines(send_timeout)

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self._deadlines is None:
            await super()._send_with_timeout(send, message)
            return
        try:
            await self._deadlines.send(send, message)
        except BaseException:
            self._send_interrupted = True
            raise

    async def __call__(self, scope: Any, receive: Any, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._deadlines is not None:
                self._deadlines.close()
