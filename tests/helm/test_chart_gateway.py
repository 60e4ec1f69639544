"""The gateway's books, its metrics credential and its trusted proxies, as the chart renders
them (issue #31): the one gateway's ledger, keys and files on a PersistentVolumeClaim that
``helm upgrade`` keeps (never an emptyDir), Prometheus scraping with a read-only metrics token
sent to gateway pods only, and the ingress's range believed for ``X-Forwarded-For``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import Settings
from tests.helm.chart import (
    CHART,
    Manifest,
    container,
    find,
    install_tools,
    manifests,
    render,
    run_helm,
)

EXAMPLE = "exampleModel.enabled=true"
DATA_CLAIM = "rel-llm-gateway-gateway-data"


@pytest.fixture(scope="module")
def helm() -> Path:
    return install_tools()


def gateway(docs: list[Manifest]) -> Manifest:
    return find(docs, "Deployment", "-gateway-gateway")


def data_volume(docs: list[Manifest]) -> dict[str, Any]:
    volumes = gateway(docs)["spec"]["template"]["spec"]["volumes"]
    volume: dict[str, Any] = next(v for v in volumes if v["name"] == "data")
    return volume


def env_of(docs: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(gateway(docs), "gateway")["env"]}


def claims(docs: list[Manifest]) -> list[Manifest]:
    return [d for d in docs if d["kind"] == "PersistentVolumeClaim"
            and d["metadata"]["name"] == DATA_CLAIM]


def failure(helm: Path, *sets: str) -> str:
    args = ["template", "rel", str(CHART), "--namespace", "llm"]
    for item in (EXAMPLE, *sets):
        args += ["--set", item]
    result = run_helm(helm, *args)
    assert result.returncode != 0, "the render should have failed"
    return result.stderr


def test_books_when_defaults_then_on_a_kept_claim_mounted_at_data_with_recreate(
    helm: Path,
) -> None:
    docs = manifests(render(helm, None, EXAMPLE))
    [claim] = claims(docs)
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert data_volume(docs) == {"name": "data",
                                 "persistentVolumeClaim": {"claimName": DATA_CLAIM}}
    mounts = container(gateway(docs), "gateway")["volumeMounts"]
    assert {"name": "data", "mountPath": "/data"} in mounts
    assert env_of(docs)["LLMGW_DATA_DIR"]["value"] == "/data"  # the SQLite ledger's folder
    # One SQLite writer on a ReadWriteOnce volume: the old pod stops before the new starts.
    assert gateway(docs)["spec"]["strategy"] == {"type": "Recreate"}
    assert gateway(docs)["spec"]["replicas"] == 1


def test_upgrade_when_values_change_then_the_same_claim_is_kept(helm: Path) -> None:
    before = manifests(render(helm, None, EXAMPLE))
    after = manifests(render(helm, None, EXAMPLE, "images.gateway.tag=9.9.9",
                             "config.gateway.limits.max_n=4", "gateway.resources.limits.cpu=8"))
    assert claims(before) == claims(after)  # same name and spec: helm upgrade keeps it
    assert data_volume(before) == data_volume(after)
    assert container(gateway(after), "gateway")["image"].endswith(":9.9.9")


def test_books_when_a_database_url_is_set_then_no_claim_and_the_pod_needs_the_url(
    helm: Path,
) -> None:
    for sets in (("secrets.databaseUrl=postgresql+asyncpg://u:p@db:5432/gateway",),
                 ("postgresql.enabled=true", "postgresql.password=pw"),
                 ("secrets.existingSecret=mine", "gateway.persistence.enabled=false")):
        docs = manifests(render(helm, None, EXAMPLE, *sets))
        assert not claims(docs), sets
        assert data_volume(docs) == {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}
        ref = env_of(docs)["LLMGW_METERING__DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref["optional"] is False, sets  # no URL, no pod: never a ledger on the emptyDir
        assert gateway(docs)["spec"]["strategy"]["type"] == "RollingUpdate"
    default = manifests(render(helm, None, EXAMPLE))
    ref = env_of(default)["LLMGW_METERING__DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True


def test_books_when_persistence_is_off_without_a_database_then_the_render_fails(
    helm: Path,
) -> None:
    assert "emptyDir" in failure(helm, "gateway.persistence.enabled=false")


def test_books_on_the_claim_when_a_rolling_update_is_asked_then_the_render_fails(
    helm: Path,
) -> None:
    assert "Recreate" in failure(helm, "gateway.updateStrategy.type=RollingUpdate")


def test_data_claim_when_smaller_than_a_tenants_file_quota_then_the_render_fails(
    helm: Path,
) -> None:
    message = failure(helm, "gateway.persistence.size=10Gi")  # 10 GiB quota + 1 GiB
    assert "max_tenant_file_bytes" in message
    docs = manifests(render(helm, None, EXAMPLE, "gateway.persistence.size=3Gi",
                            "config.gateway.batches.max_tenant_file_bytes=2147483648"))
    assert claims(docs)[0]["spec"]["resources"]["requests"]["storage"] == "3Gi"


def test_data_claim_when_an_existing_claim_is_named_then_it_is_mounted_and_none_made(
    helm: Path,
) -> None:
    docs = manifests(render(helm, None, EXAMPLE, "gateway.persistence.existingClaim=books"))
    assert not claims(docs)
    assert data_volume(docs)["persistentVolumeClaim"] == {"claimName": "books"}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_service_monitors_send_the_metrics_token_to_gateway_pods_only(helm: Path) -> None:
    docs = manifests(render(helm, None, EXAMPLE, "monitoring.serviceMonitor.enabled=true"))
    services = [d for d in docs if d["kind"] == "Service"]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert len(monitors) == 2
    for monitor in monitors:
        selected = [s["metadata"]["name"] for s in services
                    if _matches(monitor["spec"]["selector"]["matchLabels"],
                                s["metadata"]["labels"])]
        [endpoint] = monitor["spec"]["endpoints"]
        if "authorization" in endpoint:
            assert selected == ["rel-llm-gateway-gateway"]
            credentials = endpoint["authorization"]["credentials"]
            assert credentials == {"name": "rel-llm-gateway-secrets", "key": "metrics-token"}
        else:
            assert selected and all("-engine-" in name for name in selected)
    without = manifests(render(helm, None, EXAMPLE, "monitoring.serviceMonitor.enabled=true",
                               "monitoring.serviceMonitor.engines=false"))
    [only] = [d for d in without if d["kind"] == "ServiceMonitor"]
    assert only["metadata"]["name"] == "rel-llm-gateway-gateway"


def test_metrics_token_when_generated_then_in_the_secret_and_the_gateways_settings(
    helm: Path,
) -> None:
    docs = manifests(render(helm, None, EXAMPLE))
    secret = find(docs, "Secret")["stringData"]
    assert len(secret["metrics-token"]) == 40 and secret["metrics-token"] != secret["admin-key"]
    ref = env_of(docs)["LLMGW_OBSERVABILITY__METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "rel-llm-gateway-secrets", "key": "metrics-token"}
    given = manifests(render(helm, None, EXAMPLE, "secrets.metricsToken=" + "m" * 20))
    assert find(given, "Secret")["stringData"]["metrics-token"] == "m" * 20
    assert "metricsToken" in failure(helm, "secrets.metricsToken=short")


def test_trusted_proxies_when_set_then_the_gateway_believes_their_forwarded_for(
    helm: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "LLMGW_FORWARDED_ALLOW_IPS" not in env_of(manifests(render(helm, None, EXAMPLE)))
    docs = manifests(render(helm, None, EXAMPLE, "gateway.trustedProxies={10.0.0.0/8,fd00::/8}"))
    value = env_of(docs)["LLMGW_FORWARDED_ALLOW_IPS"]["value"]
    assert json.loads(value) == ["10.0.0.0/8", "fd00::/8"]
    monkeypatch.setenv("LLMGW_FORWARDED_ALLOW_IPS", value)
    assert Settings().forwarded_allow_ips == ["10.0.0.0/8", "fd00::/8"]
    assert "trustedProxies" in failure(helm, "gateway.trustedProxies={ingress-nginx}")


SHARED = ("secrets.databaseUrl=postgresql+asyncpg://db/llm", "secrets.redisUrl=redis://r:6379")


def workers_of(docs: list[Manifest]) -> int:
    command = container(gateway(docs), "gateway")["command"]
    return int(command[command.index("--workers") + 1])


@pytest.mark.parametrize(("cpu", "expected"), [("1", 1), ("3", 3), ("2500m", 2), ("500m", 1)])
def test_workers_when_books_are_shared_then_one_per_whole_cpu_requested(
    helm: Path, cpu: str, expected: int,
) -> None:
    docs = manifests(render(helm, None, EXAMPLE, *SHARED,
                            f"gateway.resources.requests.cpu={cpu}"))
    assert workers_of(docs) == expected


def test_workers_when_books_are_not_shared_then_one_and_an_explicit_count_fails(
    helm: Path,
) -> None:
    docs = manifests(render(helm, None, EXAMPLE, "gateway.resources.requests.cpu=4"))
    assert workers_of(docs) == 1  # the one gateway's SQLite books: a single writer
    assert "shared set of books" in failure(helm, "gateway.workers=2")
    explicit = manifests(render(helm, None, EXAMPLE, *SHARED, "gateway.workers=3"))
    assert workers_of(explicit) == 3


def test_gateway_command_when_parsed_by_the_cli_then_json_logs_and_its_workers(
    helm: Path,
) -> None:
    from typer.main import get_command

    from cli import build

    command = container(gateway(manifests(render(helm, None, EXAMPLE, *SHARED))),
                        "gateway")["command"]
    assert command[:2] == ["llm-gateway", "serve"]
    serve = get_command(build()).commands["serve"]  # type: ignore[attr-defined]
    params = serve.make_context("serve", list(command[2:])).params
    assert params["log_format"] == "json"  # a pod's log lines stay JSON, TTY or not
    assert params["profile"] == "kubernetes" and params["workers"] == workers_of(
        manifests(render(helm, None, EXAMPLE, *SHARED)))
