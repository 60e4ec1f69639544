"""The composition root: settings in, a wired ``GatewayState`` out."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from engine.model_store import created_at
from engine.protocol import Engine
from gateway.auth.bearer import AdminKeyAuthenticator
from gateway.http.state import GatewayState
from gateway.serving.accounting import Accounting, Unmetered
from gateway.serving.reasoning import Reasoner
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.serving.rendering import HfPromptRenderer
from gateway.settings import Settings
from gateway.upstream.registry import UpstreamRegistry

if TYPE_CHECKING:
    from gateway.batches.service import Batches
    from gateway.metering.service import Metering


def embedded_models(settings: Settings) -> ModelRegistry:
    """Each served model's engine: in-process vLLM, or remote replicas when it lists some
    (``replicas`` / ``replicas_dns``). The tokenizer always loads from the model folder."""
    from engine.embedded import EmbeddedEngine

    served = []
    for name in settings.served_models():
        config = settings.engine_config(name)
        model = settings.models[name]
        renderer = HfPromptRenderer.from_folder(config.model_path, settings.chat_template(name))
        engine = _replica_router(settings, name) if model.is_remote else EmbeddedEngine(config)
        served.append(ServedModel(name, engine, renderer, created_at(config.model_path),
                                  model.tool_parser, config.task,
                                  tuple(model.embedding_dimensions),
                                  seats=config.max_num_seqs,
                                  reasoning=_reasoner(model.reasoning_parser, renderer),
                                  reasoning_switch=model.reasoning_switch))
    return ModelRegistry(served)


def _reasoner(name: str | None, renderer: HfPromptRenderer) -> Reasoner | None:
    return None if name is None else Reasoner(name, renderer.tokenizer)


def _replica_router(settings: Settings, name: str) -> Engine:
    """The model's stock vLLM replicas, with their API key from ``replica_api_key_env``."""
    from engine.discovery import ReplicaSource
    from engine.remote import ReplicaAccess
    from engine.routing import ReplicaRouter, RoutingPolicy

    model = settings.models[name]
    key = None
    if model.replica_api_key_env is not None:
        key = os.environ.get(model.replica_api_key_env)
        if not key:
            raise ValueError(f"model {name}: {model.replica_api_key_env} (its replicas' API key, "
                             "replica_api_key_env) is not set")
    source = ReplicaSource(tuple(model.replicas), model.replicas_dns)
    policy = RoutingPolicy(**model.routing.model_dump())
    access = ReplicaAccess(api_key=key, priority_scheduling=model.priority_scheduling,
                           max_loras=model.max_loras)
    return ReplicaRouter(name, model.max_model_len, source, policy, access=access)


def _batches(settings: Settings, metering: Metering) -> Batches | None:
    from gateway.batches.files import FileStore
    from gateway.batches.service import Batches
    from gateway.batches.store import BatchStore

    if not settings.batches.enabled:
        return None
    return Batches(FileStore(metering.database), BatchStore(metering.database), metering.keys,
                   settings.batches, settings.metering.instance_id,
                   settings.limits.max_body_bytes, settings.limits.max_json_depth)


def build_state(
    settings: Settings,
    models: ModelRegistry,
    accounting: Accounting | None = None,
    *,
    metered: bool = False,
) -> GatewayState:
    """With ``metered``: ledger, virtual keys, limits and prices from ``settings.metering``."""
    admin = settings.auth.admin_key.get_secret_value() if settings.auth.admin_key else None
    upstreams = UpstreamRegistry.from_settings(settings)
    if metered:
        from gateway.metering.service import build_metering

        registry = CollectorRegistry()
        metering = build_metering(settings, registry)
        metering.accounting.adapters = models.adapters  # their prices and ledger name
        return GatewayState(settings=settings, models=models, accounting=metering.accounting,
                            authenticator=metering.authenticator, metering=metering,
                            registry=registry, upstreams=upstreams,
                            batches=_batches(settings, metering))
    return GatewayState(
        settings=settings,
        models=models,
        accounting=accounting or Unmetered(),
        authenticator=AdminKeyAuthenticator(settings.auth.enabled, admin),
        upstreams=upstreams,
    )
