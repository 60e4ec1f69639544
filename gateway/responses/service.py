"""``POST /v1/responses`` and its stored responses, on top of the serving pipeline.

A request becomes a chat call with a Responses formatter; a finished response is stored
(``store`` defaults to true, as OpenAI's) with the conversation it continues, for
``GET``/``DELETE`` and ``previous_response_id``. Everything is scoped to the tenant.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.errors import NotFoundError
from gateway.metering.ledger import utcnow
from gateway.openai.response_bodies import ResponsesRequest
from gateway.responses.convert import echo, input_items, new_response_id, to_chat
from gateway.responses.store import ResponseStore, Stored
from gateway.serving.accounting import Principal
from gateway.serving.exchange import Exchange
from gateway.serving.formatting.responses import ResponsesResponder
from gateway.serving.pipeline import Call, Pipeline
from gateway.serving.plan import GenerationPlan
from gateway.serving.registry import ServedModel

log = logging.getLogger("llm_gateway.responses")
Json = dict[str, Any]


class Responses:
    def __init__(self, pipeline: Pipeline, store: ResponseStore) -> None:
        self._pipeline = pipeline
        self.store = store

    async def find(self, response_id: str, principal: Principal) -> Stored:
        stored = await self.store.get(response_id, principal.tenant)
        if stored is None:
            raise NotFoundError(f"No response found with id '{response_id}'.",
                                param="response_id")
        return stored

    async def create(self, body: ResponsesRequest, principal: Principal, request_id: str,
                     cache_control: str | None) -> Exchange:
        history: tuple[Json, ...] = ()
        if body.previous_response_id is not None:
            try:
                history = (await self.find(body.previous_response_id, principal)).items
            except NotFoundError as exc:
                exc.param = "previous_response_id"
                raise
        response_id = new_response_id()
        asked = [*history, *input_items(body)]

        async def keep(response: Json) -> None:
            if body.store is False:
                return
            stored = Stored(response_id, principal.tenant, principal.key_id, body.model,
                            response, (*asked, *response["output"]), utcnow())
            try:
                await self.store.put(stored)
            except Exception:  # the answer is billed and sent; losing its copy is logged
                log.exception("could not store response %s", response_id)

        def responder(plan: GenerationPlan, served: ServedModel) -> ResponsesResponder:
            return ResponsesResponder(plan, echo(body, response_id), served.tokenizer, keep)

        call = Call(to_chat(body, history), principal, request_id, cache_control=cache_control,
                    responder=responder, own_models_only=True)
        return await self._pipeline.serve(call)
