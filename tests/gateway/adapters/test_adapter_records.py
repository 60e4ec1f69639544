"""Who may use an adapter, its engine id and the names and prices it takes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.serving.accounting import Principal
from gateway.serving.adapters import Adapter

ACME_KEY = Principal(key_id="k-acme", tenant="acme")
GLOBEX_KEY = Principal(key_id="k-globex", tenant="globex")
ADMIN = Principal(key_id=None, tenant="admin", is_admin=True)


def adapter(**fields: object) -> Adapter:
    return Adapter(**{"name": "think", "base_model": "base", "path": "/a", **fields})  # type: ignore[arg-type]


def test_allows_when_tenants_or_keys_listed_then_only_they_and_the_admin() -> None:
    by_tenant, by_key = adapter(tenants=("acme",)), adapter(keys=("k-globex",))
    assert [by_tenant.allows(p) for p in (ACME_KEY, GLOBEX_KEY, ADMIN)] == [True, False, True]
    assert [by_key.allows(p) for p in (ACME_KEY, GLOBEX_KEY, ADMIN)] == [False, True, True]
    assert adapter().allows(GLOBEX_KEY)  # none listed: everyone


def test_lora_id_when_same_name_then_same_positive_id_and_names_differ() -> None:
    assert adapter().lora_id == adapter(path="/b").lora_id >= 1
    assert adapter(name="other").lora_id != adapter().lora_id


@pytest.mark.parametrize("fields", [{"name": "think\n"}, {"name": "-x"}, {"name": "a/b"},
                                    {"prompt_price": Decimal(-1)},
                                    {"completion_price": Decimal("NaN")}, {"path": ""}])
def test_adapter_when_name_or_price_malformed_then_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        adapter(**fields)
