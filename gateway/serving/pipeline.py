"""The one serving pipeline: plan, cache, ticket, run, format.

Every generating endpoint and the batch worker call ``Pipeline.serve`` with a validated
body and who is asking; it returns an ``Exchange`` to stream or collect. A model served by
an upstream API leaves at the plan step for the relay (same ticket, same settlement).

0. admit: a limit already reached (RPM, budget, parallel) is refused before any work;
1. plan: the body to prompt token ids and sampling (``planning/``), off the event loop
   in a fair, bounded pool unless it is light (``offload/``); then the request holds an
   in-flight slot per engine sequence it starts (``n`` x prompts);
2. cache: a repeatable request may be answered from the response cache (a replay of the
   engine's recorded outputs) and a miss may fill it;
3. ticket: first a seat in the model's fair queue when its engine is full (``queueing.py``:
   priority bands, then tenants by weight over tokens; 429 past ``queue_timeout_s``), then
   ``Accounting.open`` reserves the worst case and writes the ledger row (429s here),
   before any engine sees the request;
4. run: ``RequestRun`` dispatches and waits for the first output, so a failing engine still
   gets a clean 4xx/5xx;
5. format: a ``Responder`` shapes the outputs as OpenAI bodies or stream chunks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from engine.errors import EngineRequestError
from engine.protocol import Engine, GenerationRequest
from gateway.caching.cache import ResponseCache
from gateway.caching.recording import Recorder, ReplayEngine
from gateway.errors import InvalidRequestError, ServiceUnavailableError
from gateway.limits.fair_queue import Disconnected
from gateway.limits.in_flight import InFlightHold
from gateway.observability.observer import RunObserver
from gateway.openai.bodies import ChatCompletionRequest, CompletionRequest
from gateway.openai.embedding_bodies import EmbeddingsRequest
from gateway.openai.shapes import ChatShape, CompletionShape, Envelope
from gateway.serving.accounting import Accounting, Admission, Principal, Ticket
from gateway.serving.attribution import Attribution, attribution_of
from gateway.serving.embedding_run import EmbeddingRun
from gateway.serving.exchange import EmbeddingExchange, EngineExchange, Exchange
from gateway.serving.fallbacks import Fallbacks, worth_another_model
from gateway.serving.formatting.chat import ChatResponder
from gateway.serving.formatting.completion import CompletionResponder
from gateway.serving.formatting.responder import Responder
from gateway.serving.offload.pool import PlanningPool
from gateway.serving.plan import GenerationPlan, Reservable
from gateway.serving.planning.embeddings import EmbeddingPlan
from gateway.serving.planning.job import PlanJob, upstream_renderer
from gateway.serving.queueing import ModelQueues, band_of, engine_priority
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.serving.run import RequestRun
from gateway.settings import LimitSettings, PlanningSettings
from gateway.upstream.registry import Upstream, UpstreamRegistry
from gateway.upstream.relay import UpstreamRelay, prompt_renderer

log = logging.getLogger("llm_gateway.serving")
Body = ChatCompletionRequest | CompletionRequest | EmbeddingsRequest
Observe = Callable[[str, str, str], RunObserver]  # (request id, model, tenant) -> observer
# Another API's formatter over the same pipeline (the Responses API): (plan, model) -> it.
ResponderFactory = Callable[[GenerationPlan, ServedModel], Responder]


@dataclass(frozen=True)
class Call:
    """One request to serve: the body, who asks, and how this call is billed."""

    body: Body
    principal: Principal
    request_id: str
    cache_control: str | None = None  # the client's Cache-Control header
    batch_id: str | None = None  # a Batch API line (batch prices, recorded on the row)
    settle_policy: Callable[[Ticket], Ticket] | None = None  # wraps the ticket (batch lines)
    responder: ResponderFactory | None = None  # default: chat or text completion shapes
    own_models_only: bool = False  # refuse upstream relays (an API they do not speak)
    in_flight: InFlightHold | None = None  # an online request's hold on limits.max_in_flight
    priority: int | None = None  # the band it asks for, up to its key's (None: the key's)
    disconnected: Disconnected | None = None  # whether its client left (checked while queued)
    tags_header: str | None = None  # the client's x-llmgw-tags header

    def __post_init__(self) -> None:
        if not self.request_id:
            raise ValueError("a call needs its request id")

    @cached_property
    def attribution(self) -> Attribution:
        """The body's ``user`` and ``metadata`` and the tags header (400s naming them)."""
        return attribution_of(self.body.user, getattr(self.body, "metadata", None),
                              self.tags_header)

    def to_fallback(self, model: str, attempt: int) -> Call:
        """The same call for another model: its own engine requests and ledger row."""
        return dataclasses.replace(self, body=self.body.model_copy(update={"model": model}),
                                   request_id=f"{self.request_id}-fb{attempt}")


@dataclass(frozen=True)
class Dispatch:
    engine: Engine
    ticket: Ticket
    recorder: Recorder | None
    headers: dict[str, str]
    replay: bool = False  # a response-cache hit: the engine is a replay of recorded outputs


def renderers_of(models: ModelRegistry, upstreams: UpstreamRegistry) -> dict[str, Any]:
    """Every renderer a plan may need, by the name a ``PlanJob`` gives it."""
    return {**{m.name: m.renderer for m in models},
            **{upstream_renderer(u.model.name): u.model.counter for u in upstreams}}


class Pipeline:
    def __init__(self, models: ModelRegistry, upstreams: UpstreamRegistry,
                 accounting: Accounting, cache: ResponseCache, observe: Observe,
                 limits: LimitSettings, draining: Callable[[], bool],
                 fallbacks: Fallbacks | None = None, salt: Callable[[str], str] = str, *,
                 planner: PlanningPool | None = None,
                 admission: Admission | None = None,
                 queues: ModelQueues | None = None) -> None:
        self.models = models
        self.upstreams = upstreams
        self._accounting = accounting
        self._cache = cache
        self._observe = observe
        self._limits = limits
        self._draining = draining
        self._fallbacks = fallbacks or Fallbacks()
        self._salt = salt  # the tenant's prefix-cache salt (an HMAC of its name)
        self.planner = planner or PlanningPool(renderers_of(models, upstreams),
                                               PlanningSettings(executor="thread"))
        self._admission = admission  # None: nothing to check before planning
        self.queues = queues or ModelQueues(
            models if limits.fair_queue else (), limits.queue_deadline_s,
            limits.stream_deadline_s, reserve=limits.queue_reserve,
            relays=[(u.model.name, u.model.seats) for u in upstreams
                    if u.model.seats is not None and limits.fair_queue])

    async def _admit(self, call: Call) -> None:
        attribution = call.attribution  # a malformed user, metadata or tags: a 400 first
        if self._admission is not None:
            await self._admission.admit(call.principal, call.body.model, call.request_id,
                                        batch_id=call.batch_id, attribution=attribution)

    async def _plan(self, call: Call, job: PlanJob) -> GenerationPlan:
        """Plan a chat or completion (after admission), then hold its sequences."""
        await self._admit(call)
        plan = await self.planner.plan(job, call.principal.tenant)
        assert isinstance(plan, GenerationPlan)
        if call.in_flight is not None:
            call.in_flight.widen(plan.sequences, plan.fanout_param)
        return plan

    async def serve(self, call: Call) -> Exchange:
        """Serve the call on its model, or on the first of its fallbacks that can, as long as
        no token was sent (each attempt is reserved, billed and priced as its own model)."""
        if self._draining():
            raise ServiceUnavailableError("the gateway is shutting down", retry_after=5)
        chain = self._fallbacks.chain(call.body.model)
        for attempt, model in enumerate(chain):
            try:
                return await self._serve(call if attempt == 0 else
                                         call.to_fallback(model, attempt))
            except Exception as exc:
                if attempt == len(chain) - 1 or not worth_another_model(exc):
                    raise
                log.info("%s: %s could not answer (%s); trying %s", call.request_id, model,
                         type(exc).__name__, chain[attempt + 1])
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _serve(self, call: Call) -> Exchange:
        if (upstream := self.upstreams.find(call.body.model)) is not None:
            if call.own_models_only:
                raise InvalidRequestError(f"model '{call.body.model}' is relayed to an upstream "
                                          "API and is not served on this endpoint",
                                          param="model")
            return await self._relay(call, upstream)
        served = await self.models.serving_for(call.body.model, call.principal)
        if isinstance(call.body, EmbeddingsRequest):
            return await self._embed(call, call.body, served)
        if served.task != "generate":
            raise InvalidRequestError(f"model '{served.name}' pools embeddings and generates "
                                      "no text: use /v1/embeddings", param="model")
        plan = await self._plan(call, PlanJob(call.body, served.base_name, served.max_model_len,
                                              self._limits, served.tool_parser,
                                              reasoning_switch=served.reasoning_switch))
        band = band_of(call.principal, call.priority, batch=call.batch_id is not None)
        dispatch = await self._dispatch(call, served, plan, band)
        requests, prompts = _engine_requests(call, plan, self._salt(call.principal.tenant),
                                             replay=dispatch.replay, band=band)
        run = RequestRun(dispatch.engine, requests, dispatch.ticket,
                         self._limits.stall_timeout_s,
                         self._observe(call.request_id, served.name, call.principal.tenant),
                         dispatch.recorder, prompts=prompts, keep_logprobs=not plan.stream,
                         count_reasoning=None if served.reasoning is None
                         else served.reasoning.count)
        await _prime(run, plan)
        responder = (call.responder(plan, served) if call.responder is not None
                     else _responder(plan, served, call.request_id))
        return EngineExchange(run, responder, plan.stream, dispatch.headers,
                              self._limits.stream_deadline_s)

    async def _embed(self, call: Call, body: EmbeddingsRequest,
                     served: ServedModel) -> EmbeddingExchange:
        if served.task != "embed":
            raise InvalidRequestError(f"model '{served.name}' does not pool embeddings",
                                      param="model")
        await self._admit(call)
        plan = await self.planner.plan(
            PlanJob(body, served.name, served.max_model_len, self._limits,
                    dimensions=served.embedding_dimensions), call.principal.tenant)
        assert isinstance(plan, EmbeddingPlan)
        band = band_of(call.principal, call.priority, batch=call.batch_id is not None)
        seat = await self.queues.seat(served.name, call.principal, plan, band, call.disconnected)
        ticket = await self.queues.ticket(seat, self._open(call, plan))
        observer = self._observe(call.request_id, served.name, call.principal.tenant)
        run = EmbeddingRun(served.engine, plan, call.request_id, ticket, observer)
        return EmbeddingExchange(run, served.name, plan.encoding)

    async def _open(self, call: Call, plan: Reservable) -> Ticket:
        ticket = await self._accounting.open(call.principal, plan, call.request_id,
                                             batch_id=call.batch_id,
                                             attribution=call.attribution)
        return ticket if call.settle_policy is None else call.settle_policy(ticket)

    async def _dispatch(self, call: Call, served: ServedModel, plan: GenerationPlan,
                        band: int) -> Dispatch:
        """Take seats in the model's queue (not for a response-cache hit, whose replay swaps
        the engine), then open the ticket."""
        cache = self._cache
        decision = cache.decide(call.principal, plan, call.cache_control)
        recording = await cache.lookup(decision, served.name)
        seat = None if recording is not None else await self.queues.seat(
            served.base_name, call.principal, plan, band, call.disconnected)
        ticket = await self.queues.ticket(seat, self._open(call, plan))
        headers = {} if cache.store is None else {
            "x-cache": "hit" if recording else "miss" if decision else "bypass"}
        if recording is not None:  # no engine runs
            return Dispatch(ReplayEngine(served.engine, recording), cache.hit_ticket(ticket),
                            None, headers, replay=True)
        if decision is None:
            return Dispatch(served.engine, ticket, None, headers)
        recorder = Recorder()
        return Dispatch(served.engine, cache.fill_ticket(ticket, decision, served.name, recorder),
                        recorder, headers)

    async def _relay(self, call: Call, upstream: Upstream) -> Exchange:
        if isinstance(call.body, EmbeddingsRequest):
            raise InvalidRequestError(f"model '{call.body.model}' is relayed to an upstream "
                                      "API, which serves no embeddings here", param="model")
        renderer = prompt_renderer(upstream.model, call.body)  # definitions count as prompt
        plan = await self._plan(call, PlanJob(call.body, renderer, upstream.model.context_window,
                                              self._limits, relayed=True))
        band = band_of(call.principal, call.priority, batch=call.batch_id is not None)
        seat = await self.queues.seat(upstream.model.name, call.principal, plan, band,
                                      call.disconnected)
        ticket = await self.queues.ticket(seat, self._open(call, plan))
        relay = UpstreamRelay(upstream.client, upstream.model, plan, call.body, ticket,
                              deadline_s=self._limits.stream_deadline_s)
        await relay.prime()
        return relay


def _engine_requests(call: Call, plan: GenerationPlan, salt: str, replay: bool,
                     band: int) -> tuple[list[GenerationRequest], list[int]]:
    """The engine requests (salted per tenant: KV blocks are shared only within it) and the
    prompt each runs. One per prompt; greedy ``n > 1`` as ``n`` copies with ``n = 1``,
    except for a cache replay, which plays the recorded (merged) outputs as one request."""
    sampling, copies = plan.sampling, 1
    if sampling.n > 1 and sampling.temperature == 0 and not replay:
        sampling, copies = dataclasses.replace(sampling, n=1), plan.sampling.n
    jobs = [(i, prompt) for i, prompt in enumerate(plan.prompts) for _ in range(copies)]
    many = len(jobs) > 1
    requests = [GenerationRequest(request_id=f"{call.request_id}-{k}" if many else call.request_id,
                                  prompt_token_ids=prompt, sampling=sampling,
                                  priority=engine_priority(band), cache_salt=salt)
                for k, (_, prompt) in enumerate(jobs)]
    return requests, [i for i, _ in jobs]


async def _prime(run: RequestRun, plan: GenerationPlan) -> None:
    """Wait for the first output; an engine's refusal names the field it came from."""
    try:
        await run.prime()
    except EngineRequestError as exc:
        await run.close()
        raise InvalidRequestError(str(exc), param=exc.param or plan.constraint_param) from exc
    except BaseException:
        await run.close()
        raise


def _responder(plan: GenerationPlan, served: ServedModel, request_id: str) -> Responder:
    created = int(time.time())
    if plan.kind == "chat":
        shape = ChatShape(Envelope("chatcmpl-" + request_id, served.name, created),
                          legacy_functions=plan.tools is not None and plan.tools.legacy)
        return ChatResponder(plan, shape, served.tokenizer, served.reasoning)
    return CompletionResponder(plan, CompletionShape(Envelope("cmpl-" + request_id,
                                                              served.name, created)))
