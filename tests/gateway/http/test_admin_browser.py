"""The admin page in a real browser (Debian's headless Chromium, driven by Selenium).

Against a metered gateway around the fake engine (its own SQLite ledger), clicking only:
sign in, create a tenant, create a key for it (the secret is shown once), use the key,
read the spend back (keys, tenants, the per-day table and plot, the ledger's newest row,
the CSV export), edit the key's limits, rotate it, revoke it; the API confirms each step.
A screenshot of the page is saved to test-artifacts/admin.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from engine.fake import FakeEngine
from gateway.app import create_app
from tests.conftest import MODEL, REPO
from tests.gateway.auth.tenancy import unique
from tests.gateway.conftest import sqlite_url
from tests.gateway.http.test_dashboard_browser import CHROMIUM_FLAGS, Gateway, _binary, _serving
from tests.gateway.metered import metered_settings, metered_state

pytestmark = [pytest.mark.slow]
BODY = {"model": MODEL, "prompt": "Hello", "max_tokens": 8}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    state = metered_state(FakeEngine(MODEL), metered_settings(sqlite_url(tmp_path)))
    with _serving(create_app(state, manage_engines=False)) as served:
        yield served


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(_binary("chromedriver")))
    try:
        yield browser
    finally:
        browser.quit()


def _settled(driver: WebDriver) -> None:
    """Wait until the page has no call in flight and shows no error."""
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "admin").get_attribute("data-pending") == "0")
    assert driver.find_element(By.ID, "admin-error").text == ""


def _type(driver: WebDriver, fields: dict[str, str]) -> None:
    for element_id, value in fields.items():
        element = driver.find_element(By.ID, element_id)
        element.clear()
        element.send_keys(value)


def _click(driver: WebDriver, element_id: str) -> None:
    driver.find_element(By.ID, element_id).click()
    _settled(driver)


def _key_row(driver: WebDriver, key_id: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'#keys-table tr[data-key-id="{key_id}"]')


def _cells(row: WebElement) -> list[str]:
    return [td.text for td in row.find_elements(By.TAG_NAME, "td")]


def _sign_in(driver: WebDriver, gateway: Gateway) -> None:
    driver.get(f"{gateway.base_url}/dashboard/admin")
    key = WebDriverWait(driver, 30).until(ec.visibility_of_element_located((By.ID, "admin-key")))
    key.send_keys(gateway.admin_key)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "admin").get_attribute("data-ready") == "true")
    _settled(driver)


def _create_key(driver: WebDriver, tenant: str) -> tuple[str, str]:
    """Create a key for ``tenant`` from the form; returns its id and the secret shown once."""
    _type(driver, {"key-tenant": tenant, "key-name": "browser", "key-models": MODEL,
                   "key-budget": "1", "key-rpm": "100"})
    _click(driver, "key-create")
    secret = driver.find_element(By.ID, "new-key-secret").text
    assert secret.startswith("sk-gw-"), secret
    key_id = secret.removeprefix("sk-gw-").partition(".")[0]
    _click(driver, "new-key-dismiss")
    assert driver.find_element(By.ID, "new-key-secret").text == ""
    return key_id, secret


def _use(gateway: Gateway, secret: str) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/v1/completions", json=BODY, timeout=30,
                      headers={"authorization": f"Bearer {secret}"})


def test_admin_page_when_a_key_is_created_used_and_revoked_then_spend_reads_back(
    gateway: Gateway, driver: WebDriver,
) -> None:
    _sign_in(driver, gateway)
    tenant = unique()
    _type(driver, {"tenant-name": tenant, "tenant-budget": "5", "tenant-rpm": "50",
                   "tenant-weight": "3", "tenant-priority": "2"})
    _click(driver, "tenant-create")
    tenant_row = driver.find_element(By.CSS_SELECTOR, f'#tenants-table tr[data-tenant="{tenant}"]')
    assert _cells(tenant_row)[:5] == [tenant, "all", "5 / month", "0", "50"]
    assert _cells(tenant_row)[7:9] == ["3", "2"]  # fair share: weight, priority

    key_id, secret = _create_key(driver, tenant)
    assert _cells(_key_row(driver, key_id))[1:5] == [tenant, "browser", MODEL, "1 / month"]
    used = _use(gateway, secret)
    assert used.status_code == 200, used.text
    cost = used.headers["x-request-cost"]
    assert Decimal(cost) > 0

    # the spend, read back from the page: keys, tenants, per day, the plot, the ledger
    _click(driver, "refresh")
    tenant_row = driver.find_element(By.CSS_SELECTOR, f'#tenants-table tr[data-tenant="{tenant}"]')
    assert _cells(tenant_row)[3] == cost
    driver.find_element(By.CSS_SELECTOR, "#spend-group option[value='key']").click()
    _click(driver, "spend-refresh")
    day_row = driver.find_element(By.CSS_SELECTOR, f'#spend-table tr[data-group="{key_id}"]')
    assert _cells(day_row)[1:] == [key_id, "1", "5", "8", cost]
    assert driver.find_element(By.ID, "spend").get_attribute("data-has-data") == "true"
    assert driver.find_elements(By.CSS_SELECTOR, "#spend-plot canvas")
    _click(driver, "keys-revoked")  # reloads the keys (and shows revoked ones from now on)
    assert _key_row(driver, key_id).find_element(By.CLASS_NAME, "spent").text == cost
    _click(driver, "ledger-refresh")
    ledger_row = driver.find_element(
        By.CSS_SELECTOR, f'#ledger-table tr[data-request-id="{used.headers["x-request-id"]}"]')
    assert _cells(ledger_row)[2:] == [tenant, key_id, MODEL, "length", "5", "8", cost]
    _click(driver, "spend-csv")
    assert driver.find_element(By.ID, "spend-csv").get_attribute("data-lines") == "2"

    # edit: one request per minute (of two at once, one is refused whatever the minute)
    _key_row(driver, key_id).find_element(By.CLASS_NAME, "edit").click()
    _type(driver, {"key-edit-rpm": "1", "key-edit-weight": "0.5", "key-edit-priority": "1"})
    _click(driver, "key-edit-save")
    assert _cells(_key_row(driver, key_id))[6] == "1"
    assert _cells(_key_row(driver, key_id))[9:11] == ["0.5", "1"]
    assert 429 in {_use(gateway, secret).status_code for _ in range(2)}

    # rotate (no grace): the page shows the new secret once, the old one stops working
    _key_row(driver, key_id).find_element(By.CLASS_NAME, "rotate").click()
    _settled(driver)
    rotated = driver.find_element(By.ID, "new-key-secret").text
    assert rotated.startswith(f"sk-gw-{key_id}.") and rotated != secret
    assert _use(gateway, secret).status_code == 401
    _click(driver, "new-key-dismiss")
    assert not driver.find_element(By.ID, "new-key").is_displayed()

    # revoke takes a second click to confirm
    revoke = _key_row(driver, key_id).find_element(By.CLASS_NAME, "revoke")
    revoke.click()
    assert revoke.text == "Confirm revoke"
    assert _use(gateway, rotated).status_code != 401  # not revoked yet
    revoke.click()
    _settled(driver)
    assert _key_row(driver, key_id).get_attribute("data-state") == "revoked"
    refused = _use(gateway, rotated)
    assert refused.status_code == 401
    listed = httpx.get(f"{gateway.base_url}/admin/keys", params={"include_revoked": "true"},
                       headers=gateway.admin_headers(), timeout=30).json()["data"]
    assert [(k["id"], k["revoked_at"] is not None, k["rpm"], k["weight"], k["priority"])
            for k in listed] == [(key_id, True, 1, 0.5, 1)]
    _screenshot(driver)


def _screenshot(driver: WebDriver) -> None:
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1400, "height": int(height), "deviceScaleFactor": 1, "mobile": False})
    assert driver.save_screenshot(str(REPO / "test-artifacts" / "admin.png"))


def test_admin_page_when_not_signed_in_then_asks_for_the_key_and_shows_nothing(
    gateway: Gateway, driver: WebDriver,
) -> None:
    driver.get(f"{gateway.base_url}/dashboard/admin")
    WebDriverWait(driver, 30).until(ec.visibility_of_element_located((By.ID, "admin-key")))
    assert driver.find_element(By.ID, "admin").get_attribute("data-ready") == "false"
    assert driver.find_elements(By.CSS_SELECTOR, "#keys-table tbody tr") == []
