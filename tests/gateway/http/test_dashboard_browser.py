"""The dashboard in a real browser (Debian's headless Chromium, driven by Selenium).

Against the session's real gateway: sign in with the admin key, send a chat in the
playground, wait for streamed text, token counts and the cost figure, check that the
plots drew the request, and save a screenshot to test-artifacts/dashboard.png.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import REPO, LiveGateway

pytestmark = [pytest.mark.engine, pytest.mark.slow]

ARTIFACTS = REPO / "test-artifacts"
PROMPT = "Name three colours of the sea."
MAX_TOKENS = 24
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--no-first-run", "--window-size=1400,1200",
)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: run scripts/browser.sh (make test does)")
    return path


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


def _usage_of_one_chat(gateway: LiveGateway) -> dict[str, object]:
    """What the gateway's usage carries (is ``cost`` there?), asked directly."""
    body = {"model": gateway.model, "max_tokens": 1,
            "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{gateway.v1}/chat/completions", json=body,
                          headers=gateway.admin_headers(), timeout=120)
    response.raise_for_status()
    usage: dict[str, object] = response.json()["usage"]
    return usage


def _sign_in(driver: WebDriver, gateway: LiveGateway) -> None:
    wait = WebDriverWait(driver, 30)
    driver.get(f"{gateway.base_url}/dashboard")
    key = wait.until(ec.visibility_of_element_located((By.ID, "admin-key")))
    key.send_keys(gateway.admin_key)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait.until(lambda d: Select(d.find_element(By.ID, "chat-model")).options)
    Select(driver.find_element(By.ID, "chat-model")).select_by_value(gateway.model)


def _chat(driver: WebDriver) -> None:
    tokens = driver.find_element(By.ID, "chat-max-tokens")
    tokens.clear()
    tokens.send_keys(str(MAX_TOKENS))
    driver.find_element(By.ID, "chat-input").send_keys(PROMPT)
    driver.find_element(By.ID, "chat-send").click()
    WebDriverWait(driver, 180).until(
        lambda d: d.find_element(By.ID, "playground").get_attribute("data-state")
        in ("done", "error"))


def _plot_has_data(driver: WebDriver, panel: str) -> bool:
    section = driver.find_element(By.ID, f"panel-{panel}")
    canvases = section.find_elements(By.TAG_NAME, "canvas")
    return section.get_attribute("data-has-data") == "true" and any(
        c.size["width"] > 0 for c in canvases)


def test_dashboard_when_chatting_in_the_playground_then_streams_costs_and_plots(
    live_gateway: LiveGateway, browser: WebDriver,
) -> None:
    expected_usage = _usage_of_one_chat(live_gateway)
    _sign_in(browser, live_gateway)
    _chat(browser)

    playground = browser.find_element(By.ID, "playground")
    output = browser.find_element(By.ID, "chat-output").text
    assert playground.get_attribute("data-state") == "done", output
    assert output.strip()
    completion = int(browser.find_element(By.ID, "chat-completion-tokens").text)
    assert 1 <= completion <= MAX_TOKENS
    assert int(browser.find_element(By.ID, "chat-prompt-tokens").text) > 0
    cost = browser.find_element(By.ID, "chat-cost")
    if "cost" in expected_usage:  # metered: the figure from the final usage chunk
        shown = json.loads(cost.get_attribute("data-cost") or "null")
        assert isinstance(shown, int | float) and shown >= 0
        assert cost.text == cost.text.strip() and float(cost.text) == shown
    else:
        assert cost.text == "not metered"

    WebDriverWait(browser, 60).until(
        lambda d: _plot_has_data(d, "requests") and _plot_has_data(d, "tokens")
        and _plot_has_data(d, "latency"))
    ARTIFACTS.mkdir(exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {  # the whole page
        "width": 1400, "height": int(height), "deviceScaleFactor": 1, "mobile": False})
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
