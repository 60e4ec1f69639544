"""Limit rejections and the tenant label bound, through the real app (fake engine)."""

from __future__ import annotations

import httpx

from engine.fake import CharRenderer, FakeEngine
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.errors import BudgetExceededError, RateLimitError
from gateway.observability.metrics import OTHER_TENANTS, TenantLabels
from gateway.serving.accounting import Principal, Ticket
from gateway.serving.attribution import NOBODY, Attribution
from gateway.serving.plan import GenerationPlan
from gateway.serving.registry import ModelRegistry, ServedModel
from tests.conftest import ADMIN_KEY, MODEL, make_settings

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


class RefusingAccounting:
    """Refuses every request: the first with a rate limit, later ones for budget."""

    def __init__(self) -> None:
        self.calls = 0

    async def open(self, principal: Principal, plan: GenerationPlan, request_id: str,
                   batch_id: str | None = None, attribution: Attribution = NOBODY) -> Ticket:
        del principal, plan, request_id, batch_id, attribution
        self.calls += 1
        if self.calls == 1:
            raise RateLimitError("slow down", retry_after=1)
        raise BudgetExceededError("budget spent")


async def test_metrics_when_accounting_refuses_then_counts_429s_by_tenant_and_reason() -> None:
    engine = FakeEngine(model_name=MODEL)
    registry = ModelRegistry([ServedModel(MODEL, engine, CharRenderer())])
    state = build_state(make_settings(), registry, RefusingAccounting())
    app = create_app(state, manage_engines=False)
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway", headers=headers) as client:
        for _ in range(3):
            response = await client.post("/v1/chat/completions", json=CHAT)
            assert response.status_code == 429

    def get(name: str, **labels: str) -> float | None:
        return state.registry.get_sample_value(name, labels)

    assert get("llmgw_limit_rejections_total", tenant="admin", reason="rate_limit_exceeded") == 1
    assert get("llmgw_limit_rejections_total", tenant="admin", reason="insufficient_quota") == 2
    assert get("llmgw_http_errors_total", code="429", type="rate_limit_error") == 1
    assert get("llmgw_http_errors_total", code="429", type="insufficient_quota") == 2
    assert get("llmgw_requests_total", model=MODEL, tenant="admin", status="ok") is None


def test_tenant_labels_when_over_the_limit_then_later_tenants_share_other() -> None:
    labels = TenantLabels(limit=2)
    assert [labels(t) for t in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER_TENANTS, "a",
                                                              OTHER_TENANTS]
