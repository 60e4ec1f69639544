"""The dashboard in a real browser (Debian's headless Chromium, driven by Selenium).

Sign in with the admin key, send a chat in the playground, wait for streamed text, token
counts and the cost figure, and check that the plots drew the request. Three gateways, one
claim each about the cost figure:

- a metered gateway around the fake engine (in this process, its own SQLite ledger): the
  figure is the request's cost, > 0, the same as the ledger's and as the price list gives;
- an unmetered gateway around the fake engine: the figure says "not metered";
- the session's real gateway (``llm-gateway serve``, vLLM; always metered): a cost > 0
  within what its prices allow for the tokens shown, and a screenshot saved to
  test-artifacts/dashboard.png.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from engine.fake import FakeEngine
from gateway.app import create_app
from gateway.settings import PriceSettings, load_settings
from tests.conftest import ADMIN_KEY, MODEL, REPO, LiveGateway, fake_state, free_port
from tests.gateway.conftest import sqlite_url
from tests.gateway.metered import metered_settings, metered_state

pytestmark = [pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts"
PROMPT = "Name three colours of the sea."
MAX_TOKENS = 24
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--no-first-run", "--window-size=1400,1200",
)


@dataclass(frozen=True)
class Gateway:
    """What the browser needs: where the dashboard is, the admin key, the model to chat with."""

    base_url: str
    admin_key: str = ADMIN_KEY
    model: str = MODEL

    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.admin_key}"}


@dataclass(frozen=True)
class Shown:
    """What the playground shows once a chat has finished."""

    output: str
    prompt_tokens: int
    completion_tokens: int
    cost_text: str
    cost_data: str  # data-cost: the usage's cost as JSON, "" when not metered


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: run scripts/browser.sh (make test does)")
    return path


def _price() -> PriceSettings:
    return load_settings(profile="test").prices.models[MODEL]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(_binary("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def _serving(app: Any) -> Iterator[Gateway]:
    """``app`` served by uvicorn (lifespan on) in a thread, on a free loopback port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="dashboard-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the gateway thread stopped before it served"
        assert time.monotonic() < deadline, "the gateway did not start within 30 s"
        time.sleep(0.05)
    try:
        yield Gateway(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def metered_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A metered gateway (ledger, prices from the test profile) around the fake engine."""
    state = metered_state(FakeEngine(MODEL, token_delay_s=0.01),
                          metered_settings(sqlite_url(tmp_path)))
    with _serving(create_app(state, manage_engines=False)) as gateway:
        yield gateway


@pytest.fixture
def unmetered_gateway() -> Iterator[Gateway]:
    state = fake_state(FakeEngine(MODEL, token_delay_s=0.01))
    assert state.metering is None
    with _serving(create_app(state, manage_engines=False)) as gateway:
        yield gateway


def _sign_in(driver: WebDriver, gateway: Gateway | LiveGateway) -> None:
    wait = WebDriverWait(driver, 30)
    driver.get(f"{gateway.base_url}/dashboard")
    key = wait.until(ec.visibility_of_element_located((By.ID, "admin-key")))
    key.send_keys(gateway.admin_key)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait.until(lambda d: Select(d.find_element(By.ID, "chat-model")).options)
    Select(driver.find_element(By.ID, "chat-model")).select_by_value(gateway.model)


def _chat(driver: WebDriver) -> Shown:
    tokens = driver.find_element(By.ID, "chat-max-tokens")
    tokens.clear()
    tokens.send_keys(str(MAX_TOKENS))
    driver.find_element(By.ID, "chat-input").send_keys(PROMPT)
    driver.find_element(By.ID, "chat-send").click()
    WebDriverWait(driver, 180).until(
        lambda d: d.find_element(By.ID, "playground").get_attribute("data-state")
        in ("done", "error"))
    output = driver.find_element(By.ID, "chat-output").text
    state = driver.find_element(By.ID, "playground").get_attribute("data-state")
    assert state == "done", output
    cost = driver.find_element(By.ID, "chat-cost")
    return Shown(
        output=output,
        prompt_tokens=int(driver.find_element(By.ID, "chat-prompt-tokens").text),
        completion_tokens=int(driver.find_element(By.ID, "chat-completion-tokens").text),
        cost_text=cost.text,
        cost_data=cost.get_attribute("data-cost") or "",
    )


def _shown_cost(shown: Shown) -> Decimal:
    """The cost figure as a number: data-cost and the visible text must agree."""
    assert shown.cost_data, f"no cost shown: {shown}"
    data = json.loads(shown.cost_data)
    assert isinstance(data, int | float) and not isinstance(data, bool), shown
    assert shown.cost_text == shown.cost_text.strip()
    assert float(shown.cost_text) == data, shown
    return Decimal(repr(data))


def _assert_tokens_shown(shown: Shown) -> None:
    assert shown.output.strip()
    assert 1 <= shown.completion_tokens <= MAX_TOKENS
    assert shown.prompt_tokens > 0


def _plot_has_data(driver: WebDriver, panel: str) -> bool:
    section = driver.find_element(By.ID, f"panel-{panel}")
    canvases = section.find_elements(By.TAG_NAME, "canvas")
    return section.get_attribute("data-has-data") == "true" and any(
        c.size["width"] > 0 for c in canvases)


def _wait_for_plots(driver: WebDriver) -> None:
    WebDriverWait(driver, 60).until(
        lambda d: _plot_has_data(d, "requests") and _plot_has_data(d, "tokens")
        and _plot_has_data(d, "latency"))


def test_dashboard_when_metered_then_playground_shows_the_ledgers_cost_of_the_chat(
    metered_gateway: Gateway, browser: WebDriver,
) -> None:
    _sign_in(browser, metered_gateway)
    shown = _chat(browser)
    _assert_tokens_shown(shown)
    cost = _shown_cost(shown)
    assert cost > 0

    price = _price()
    expected = (shown.prompt_tokens * price.prompt
                + shown.completion_tokens * price.completion) / 10**6
    assert cost == expected, (cost, expected)
    spend = httpx.get(f"{metered_gateway.base_url}/admin/spend",
                      headers=metered_gateway.admin_headers(), timeout=30)
    spend.raise_for_status()
    ledger = spend.json()["totals"]  # a fresh ledger: the playground's chat is its only row
    assert (ledger["requests"], ledger["prompt_tokens"], ledger["completion_tokens"],
            ledger["cached_tokens"]) == (1, shown.prompt_tokens, shown.completion_tokens, 0)
    assert Decimal(ledger["cost_usd"]) == cost
    _wait_for_plots(browser)


def test_dashboard_when_not_metered_then_playground_says_not_metered(
    unmetered_gateway: Gateway, browser: WebDriver,
) -> None:
    _sign_in(browser, unmetered_gateway)
    shown = _chat(browser)
    _assert_tokens_shown(shown)
    assert (shown.cost_text, shown.cost_data) == ("not metered", "")
    _wait_for_plots(browser)


@pytest.mark.engine
def test_dashboard_when_chatting_with_the_real_engine_then_streams_a_priced_chat_and_plots(
    live_gateway: LiveGateway, browser: WebDriver,
) -> None:
    _sign_in(browser, live_gateway)
    shown = _chat(browser)
    _assert_tokens_shown(shown)
    # `llm-gateway serve` always meters: the figure is the cost of the tokens shown, each
    # prompt token at the prompt price or, when vLLM's prefix cache served it, the cached one.
    cost = _shown_cost(shown)
    assert cost > 0
    price = _price()
    cached_price = price.prompt if price.cached_prompt is None else price.cached_prompt
    completion = shown.completion_tokens * price.completion
    lowest = (shown.prompt_tokens * min(price.prompt, cached_price) + completion) / 10**6
    highest = (shown.prompt_tokens * max(price.prompt, cached_price) + completion) / 10**6
    assert lowest <= cost <= highest, (lowest, cost, highest)

    _wait_for_plots(browser)
    ARTIFACTS.mkdir(exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # the whole page
        "width": 1400, "height": int(height), "deviceScaleFactor": 1, "mobile": False})
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
