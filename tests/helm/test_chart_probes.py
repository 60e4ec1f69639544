"""The gateway's probes on a listener of their own (``serve --probe-port``): a flood of
sockets on the API port cannot fail liveness (docs/reliability.md, "Slow clients")."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.settings import Settings
from tests.helm.chart import container, find, install_tools, manifests, render, run_helm

GATEWAY = "-gateway-gateway"


@pytest.fixture(scope="module")
def helm() -> Path:
    return install_tools()


def test_gateway_probes_when_rendered_then_they_use_the_probe_port_the_command_opens(
    helm: Path,
) -> None:
    docs = manifests(render(helm, None, "exampleModel.enabled=true", "gateway.probePort=9100"))
    main = container(find(docs, "Deployment", GATEWAY), "gateway")
    command = main["command"]
    assert command[command.index("--probe-port") + 1] == "9100"
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"http": 8000,
                                                                      "probe": 9100}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert main[kind]["httpGet"]["port"] == "probe", kind
    # The API's Service does not carry the probe port.
    service = find(docs, "Service", "llm-gateway-gateway")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_gateway_probe_port_when_equal_to_the_api_port_then_the_chart_refuses(
    helm: Path,
) -> None:
    result = run_helm(helm, "template", "rel", "helm/llm-gateway", "--set",
                      "exampleModel.enabled=true", "--set", "gateway.probePort=8000")
    assert result.returncode != 0
    assert "gateway.probePort must differ from gateway.port" in result.stderr


def test_gateway_config_when_rendered_then_no_per_address_cap_behind_the_proxy(
    helm: Path,
) -> None:
    docs = manifests(render(helm, None, "exampleModel.enabled=true"))
    data = yaml.safe_load(find(docs, "ConfigMap", "llm-gateway-config")["data"]["gateway.yaml"])
    server = Settings(**data).server
    assert server.max_pending_per_client == 0  # every client may share the proxy's address
    assert server.header_timeout_s == 10 and server.max_pending_connections == 512
