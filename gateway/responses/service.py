"""``POST /v1/responses`` and its stored responses, on top of the serving pipeline.

A request becomes a chat call with a Responses formatter; a finished response is stored
(``store`` defaults to true, as OpenAI's) with the items it added, linked to the response it
continues, for ``GET``/``DELETE`` and ``previous_response_id``: a continuation walks the
links back (at most ``responses.max_chain`` responses). Storage is bounded per tenant
(``responses.max_tenant_bytes``, checked before generating) and expires
(``responses.ttl_s``; ``purging`` deletes expired rows). Everything is scoped to the tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

from gateway.errors import InvalidRequestError, NotFoundError, RequestTooLargeError
from gateway.metering.ledger import utcnow
from gateway.openai.bodies import ChatCompletionRequest
from gateway.openai.response_bodies import ResponsesRequest
from gateway.responses.convert import echo, input_items, new_response_id, to_chat
from gateway.responses.store import ResponseStore, Stored
from gateway.serving.accounting import Principal
from gateway.serving.exchange import Exchange
from gateway.serving.formatting.responses import ResponsesResponder
from gateway.serving.pipeline import Call, Pipeline
from gateway.serving.plan import GenerationPlan
from gateway.serving.registry import ServedModel
from gateway.settings import ResponsesSettings

log = logging.getLogger("llm_gateway.responses")
Json = dict[str, Any]
Chain = tuple[tuple[Json, ...], tuple[str, ...]]  # the conversation's items, its response ids
PURGE_BATCH = 500  # expired rows deleted per statement


class Responses:
    def __init__(self, pipeline: Pipeline, store: ResponseStore,
                 settings: ResponsesSettings | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._pipeline = pipeline
        self.store = store
        self.settings = settings or ResponsesSettings()
        self.clock = clock

    async def find(self, response_id: str, principal: Principal) -> Stored:
        stored = await self.store.get(response_id, principal.tenant, self.clock())
        if stored is None:
            raise NotFoundError(f"No response found with id '{response_id}'.",
                                param="response_id")
        return stored

    async def delete(self, response_id: str, principal: Principal) -> None:
        if not await self.store.delete(response_id, principal.tenant, self.clock()):
            raise NotFoundError(f"No response found with id '{response_id}'.",
                                param="response_id")

    async def chain(self, response_id: str, principal: Principal) -> Chain:
        """The conversation a continuation of ``response_id`` continues: its items, walking
        the links back, and the ids walked (newest first)."""
        parts: list[tuple[Json, ...]] = []
        ids: list[str] = []
        current: str | None = response_id
        while current is not None:
            stored = await self.store.get(current, principal.tenant, self.clock())
            if stored is None:
                raise NotFoundError(_missing(response_id, current), param="previous_response_id")
            parts.append(stored.items)
            ids.append(stored.id)
            current = stored.previous_id
            if len(ids) >= self.settings.max_chain:  # continuing it would pass the bound
                raise InvalidRequestError(
                    f"this conversation has {self.settings.max_chain} responses, the most "
                    "one may have: start a new one (send the history as input)",
                    param="previous_response_id", code="conversation_too_long")
        return tuple(item for part in reversed(parts) for item in part), tuple(ids)

    async def check_quota(self, principal: Principal, adding: int) -> None:
        """A 413 ``storage_quota_exceeded`` when storing ``adding`` more bytes would pass the
        tenant's ``responses.max_tenant_bytes`` (checked before anything is generated)."""
        quota = self.settings.max_tenant_bytes
        used = sum(t.bytes for t in await self.store.usage(principal.tenant, self.clock()))
        if used + adding > quota:
            raise RequestTooLargeError(
                f"this tenant's stored responses take {used} bytes, at its quota of {quota}: "
                "send store: false (nothing is stored), delete stored responses, or wait for "
                "them to expire", param="store", code="storage_quota_exceeded")

    async def create(self, body: ResponsesRequest, principal: Principal,
                     call_for: Callable[[ChatCompletionRequest], Call]) -> Exchange:
        """Serve ``body`` as the chat call ``call_for`` makes of it (the online request's
        headers, disconnect check and in-flight hold), answered in the Responses shape."""
        history, ancestors = ((), ()) if body.previous_response_id is None else (
            await self.chain(body.previous_response_id, principal))
        added = input_items(body)
        storing = body.store is not False
        if storing:
            await self.check_quota(principal, len(json.dumps(added).encode()))
        response_id = new_response_id()

        async def keep(response: Json) -> None:
            if not storing:
                return
            now = self.clock()
            stored = Stored(response_id, principal.tenant, principal.key_id, body.model,
                            response, (*added, *response["output"]), now,
                            body.previous_response_id,
                            now + timedelta(seconds=self.settings.ttl_s))
            try:
                await self.store.put(stored, ancestors)
            except Exception:  # the answer is billed and sent; losing its copy is logged
                log.exception("could not store response %s", response_id)

        def responder(plan: GenerationPlan, served: ServedModel) -> ResponsesResponder:
            return ResponsesResponder(plan, echo(body, response_id), served.tokenizer, keep,
                                      served.reasoning)

        call = dataclasses.replace(call_for(to_chat(body, history)), responder=responder,
                                   own_models_only=True)
        return await self._pipeline.serve(call)

    async def purge(self, passes: int = 20) -> int:
        """Delete expired stored responses (in bounded passes); how many went."""
        gone = 0
        for _ in range(passes):
            deleted = await self.store.delete_expired(self.clock(), PURGE_BATCH)
            gone += deleted
            if deleted < PURGE_BATCH:
                break
        return gone

    @contextlib.asynccontextmanager
    async def purging(self) -> AsyncIterator[None]:
        """Purge expired responses every ``responses.purge_interval_s`` while inside."""
        task = asyncio.create_task(self._purge_forever(), name="responses-purge")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _purge_forever(self) -> None:
        while True:
            try:
                if gone := await self.purge():
                    log.info("purged %d expired stored responses", gone)
            except Exception:  # the database away: try again next time
                log.exception("could not purge expired stored responses")
            await asyncio.sleep(self.settings.purge_interval_s)


def _missing(asked: str, missing: str) -> str:
    if asked == missing:
        return f"No response found with id '{asked}'."
    return (f"previous_response_id '{asked}' continues response '{missing}', which was deleted "
            "or has expired: the conversation cannot be continued (send its history as input)")
