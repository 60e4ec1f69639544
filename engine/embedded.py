"""vLLM's ``AsyncLLM`` running inside the gateway process (embedded mode)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from engine.config import EngineConfig
from engine.errors import EngineRequestError, EngineUnavailableError, ModelNotPreparedError
from engine.liveness import ProgressWatch, Vitals
from engine.pooling import pool
from engine.protocol import (
    EmbeddingOutput,
    EmbeddingRequest,
    EngineOutput,
    EngineStats,
    GenerationRequest,
)
from engine.quantization.capability import adapt_to_hardware, require_supported
from engine.stat_collector import StatCollector
from engine.supervisor import supervise
from engine.vllm_args import engine_arg_overrides
from engine.vllm_convert import to_engine_output, to_lora_request, to_sampling_params
from engine.vllm_plugin import problem as plugin_problem

log = logging.getLogger("llm_gateway.engine")

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM


class EmbeddedEngine:
    """One vLLM engine in this process; ``start`` loads it (about a minute on CPU)."""

    def __init__(self, config: EngineConfig) -> None:
        self._config = config
        self._llm: AsyncLLM | None = None
        self._stats = StatCollector(config.speculation.health_policy())
        self._start_lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._down_since: float | None = None  # died (or restarting) since, monotonic
        self._restart_failures = 0  # consecutive failed restarts (cleared by a good one)
        self._progress = ProgressWatch()
        self.restarts = 0

    @property
    def model_name(self) -> str:
        return self._config.model_name

    @property
    def max_model_len(self) -> int:
        return self._config.max_model_len

    @property
    def config(self) -> EngineConfig:
        return self._config

    async def start(self) -> None:
        async with self._start_lock:
            if self._llm is not None:
                return
            if (missing := self._config.unprepared()) is not None:
                raise ModelNotPreparedError(missing)
            self._llm = await asyncio.to_thread(self._build)
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(supervise(self))

    def is_dead(self) -> bool:
        """Died, or a restart failed and left no engine (the supervisor tries again)."""
        llm = self._llm
        if llm is None:
            return self._restart_failures > 0
        return bool(llm.errored)

    async def restart(self) -> None:
        """Replace a dead engine with a fresh one (requests meanwhile get 503s)."""
        async with self._start_lock:
            self._down_since = self._down_since or time.monotonic()
            dead, self._llm = self._llm, None
            if dead is not None:
                await asyncio.to_thread(_shutdown_quietly, dead)
            try:
                self._llm = await asyncio.to_thread(self._build)
            except BaseException:
                self._restart_failures += 1
                raise
            self._restart_failures, self._down_since = 0, None
            self.restarts += 1

    def vitals(self, now: float) -> Vitals:
        """Down (dead or restarting) for how long, and stalled for how long (liveness)."""
        llm = self._llm
        if (llm is not None and llm.errored) or (llm is None and self._down_since is not None):
            self._down_since = self._down_since or now
            return Vitals(down_s=now - self._down_since,
                          restart_failed=self._restart_failures > 0)
        if llm is None:  # first load: the startup probe bounds it
            return Vitals()
        busy = llm.output_processor.get_num_unfinished_requests() > 0  # type: ignore[no-untyped-call]
        return Vitals(stalled_s=self._progress.observe(now, busy, self._stats.steps))

    def _build(self) -> AsyncLLM:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        require_supported(self._config)  # a clear error before vLLM tries the kernels
        config = adapt_to_hardware(self._config)
        if config.dtype != self._config.dtype:
            log.warning("%s: serving with dtype %s (this CPU's INT8 kernel needs it)",
                        config.model_name, config.dtype)
        # Before vLLM starts its processes, which read these (the compile caches included).
        os.environ.update(config.environment(on_cpu=current_platform.is_cpu()))
        if config.speculation.skips_idle_drafts and (why := plugin_problem()) is not None:
            log.warning("%s: the drafter will still run at k=0 under load: %s",
                        config.model_name, why)
        kwargs = config.engine_args_kwargs()
        kwargs.update(engine_arg_overrides(config.extra_args, set(kwargs)))
        args = AsyncEngineArgs(**kwargs)
        return AsyncLLM.from_engine_args(args, stat_loggers=[self._stats.factory])

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            self._supervisor = None
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.to_thread(llm.shutdown)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        llm = self._require()
        from vllm.exceptions import VLLMClientError
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        prompt: Any = TokensPrompt(prompt_token_ids=list(request.prompt_token_ids))
        if request.cache_salt is not None:
            prompt["cache_salt"] = request.cache_salt
        try:
            params = to_sampling_params(request.sampling)
            async for out in llm.generate(
                prompt, params, request.request_id, priority=self._priority(request.priority),
                lora_request=to_lora_request(request.lora),
            ):
                yield to_engine_output(out, request.sampling.logprobs or 0)
        except EngineDeadError as exc:
            raise EngineUnavailableError(f"engine for {self.model_name} died: {exc}") from exc
        except (VLLMClientError, ValueError) as exc:
            raise EngineRequestError(str(exc), getattr(exc, "parameter", None)) from exc
        except EngineGenerateError as exc:
            if isinstance(exc.__cause__, OverflowError | UnicodeEncodeError):
                # a value its transport (msgpack) cannot carry: the request's, not the engine's
                raise EngineRequestError("the request holds a value the engine cannot take "
                                         "(an integer past 64 bits, or text that is not "
                                         "valid Unicode)") from exc
            raise  # a real engine failure: a 500 that names nothing internal

    async def embed(self, request: EmbeddingRequest) -> EmbeddingOutput:
        llm = self._require()
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            return await pool(llm, dataclasses.replace(
                request, priority=self._priority(request.priority)))
        except EngineDeadError as exc:
            raise EngineUnavailableError(f"engine for {self.model_name} died: {exc}") from exc

    async def abort(self, request_id: str) -> None:
        if self._llm is not None:
            await self._llm.abort(request_id)

    async def is_ready(self) -> bool:
        llm = self._llm
        if llm is None or llm.errored:
            return False
        try:
            await asyncio.wait_for(llm.check_health(), timeout=5.0)
        except Exception:
            return False
        return True

    def stats(self) -> EngineStats:
        unfinished = 0
        if self._llm is not None:
            unfinished = self._llm.output_processor.get_num_unfinished_requests()  # type: ignore[no-untyped-call]
        return self._stats.snapshot(unfinished)

    def _priority(self, priority: int) -> int:
        """vLLM refuses a priority unless it schedules by priority: then none is sent."""
        return priority if self._config.priority_scheduling else 0

    def _require(self) -> AsyncLLM:
        llm = self._llm
        if llm is None:
            raise EngineUnavailableError(f"engine for {self.model_name} is not started")
        if llm.errored:
            raise EngineUnavailableError(f"engine for {self.model_name} has died")
        return llm


def _shutdown_quietly(llm: AsyncLLM) -> None:
    try:
        llm.shutdown()
    except Exception:  # a dead engine may fail to shut down cleanly; it is gone anyway
        log.warning("shutdown of a dead engine failed")
