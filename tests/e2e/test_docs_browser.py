"""The gateway's API docs (/docs) in a real browser: Debian's Chromium, headless, driven by
selenium through Debian's chromedriver.

The fleet is this module's own, started as ``make run`` starts it (the ``fleet`` fixture). The
page must load with nothing in the browser's console at error level (a script that fails, an
asset that does not load, a Content-Security-Policy violation); the top bar's definition
selector must list every routed service's document, and each must render all of its
operations. Then, as a user would: "Authorize" with a token ``fleetctl token`` minted, "Try it
out" on POST /v1/products with a body, "Execute", a 201 in the page, and the product there when
read back through the gateway. A screenshot of the end is saved in the test's tmp_path.

Chromium and chromedriver are the machine's (``make deps-system`` installs them): without them
the test fails, it does not skip.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from e2e_client import FleetClient
from e2e_fleet import ALL_SCOPES, SERVICES, Fleet
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30.0
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

T = TypeVar("T")


def installed(path: str, package: str) -> str:
    found = shutil.which(path)
    if found is None:
        pytest.fail(f"{path} is not installed: apt-get install {package} "
                    "(make deps-system installs it)", pytrace=False)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = installed(CHROMIUM, "chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1100", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking"):
        options.add_argument(argument)
    # Everything the page writes to its console, and every failed load, from the start.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=Service(installed(CHROMEDRIVER, "chromium-driver")))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def token(fleet: Fleet) -> str:
    """A token allowed everything, minted the way `fleetctl token` mints one."""
    minted = fleet.fleetctl("token", "--sub", "docs-browser", "--scope", ALL_SCOPES,
                            "--ttl", "3600")
    assert minted.returncode == 0, minted.stderr
    return minted.stdout.strip()


def wait(driver: Chrome, what: str, check: Callable[[Chrome], T],
         timeout: float = WAIT) -> T:
    """`check`'s first truthy answer; a failure naming `what` (and the console) otherwise."""
    def attempt(d: Chrome) -> T | bool:
        try:
            return check(d) or False
        except (StaleElementReferenceException, WebDriverException):
            return False  # the page re-rendered under us: ask again

    try:
        result: T = WebDriverWait(driver, timeout, poll_frequency=0.2).until(  # type: ignore[assignment]
            attempt)
    except WebDriverException:
        pytest.fail(f"{what} did not happen in {timeout:.0f}s; the browser's console:\n"
                    + "\n".join(entry["message"] for entry in console(driver)),
                    pytrace=False)
    return result


def console(driver: Chrome) -> list[dict[str, Any]]:
    """What the page logged since the last call (and every load that failed)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return entries


def console_errors(driver: Chrome) -> list[str]:
    return [f"{entry['level']}: {entry['message']}" for entry in console(driver)
            if entry["level"] == "SEVERE"]


def shown_operations(driver: Chrome) -> set[tuple[str, str]]:
    """(method, path) of every operation the page shows."""
    found = set()
    for block in driver.find_elements(By.CSS_SELECTOR, ".opblock"):
        method = block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.lower()
        path = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path")
        found.add((method, path.get_attribute("data-path") or path.text))
    return found


def document_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items()
            for method in item if method in METHODS}


def title(driver: Chrome) -> str:
    return driver.find_element(By.CSS_SELECTOR, ".information-container .title").text


def test_the_docs_list_every_document_and_try_it_out_creates_a_product(
    fleet: Fleet, browser: Chrome, token: str, tmp_path: Path
) -> None:
    gateway = f"http://127.0.0.1:{fleet.gateway_port}"
    client = FleetClient(fleet.gateway_port, token)
    documents = {}
    for service in SERVICES:
        response = client.get(f"/{service}/v1/openapi.json")
        assert response.status == 200, response
        documents[service] = response.json()
        # "Try it out" calls the service through the gateway.
        assert documents[service]["servers"] == [{"url": f"/{service}"}]

    browser.get(f"{gateway}/docs")
    try:
        # The top bar lists every routed service's document, in the gateway's order.
        selector = wait(browser, "the definition selector",
                        lambda d: d.find_element(By.CSS_SELECTOR, ".topbar select"))
        assert [option.text for option in Select(selector).options] == list(SERVICES)
        for service in SERVICES:
            Select(browser.find_element(By.CSS_SELECTOR, ".topbar select")) \
                .select_by_visible_text(service)
            expected = document_operations(documents[service])
            heading = documents[service]["info"]["title"]
            wait(browser, f"{service}'s document to render",
                 lambda d, h=heading: title(d).startswith(h))  # type: ignore[misc]
            wait(browser, f"all of {service}'s operations to render",
                 lambda d, e=expected: shown_operations(d) == e)  # type: ignore[misc]
        assert not console_errors(browser)

        # Back to inventory, to create a product as a user would.
        Select(browser.find_element(By.CSS_SELECTOR, ".topbar select")) \
            .select_by_visible_text("inventory")
        wait(browser, "inventory's document to render",
             lambda d: title(d).startswith(documents["inventory"]["info"]["title"])
             and d.find_elements(By.CSS_SELECTOR, "#operations-default-postProducts"))
        authorize(browser, token)
        sku = f"DOCS-{uuid.uuid4().hex[:8].upper()}"
        body = {"sku": sku, "name": "Made in the docs", "reorder_point": 1}
        create = documents["inventory"]["paths"]["/v1/products"]["post"]
        examples = [example["value"] for example in
                    create["requestBody"]["content"]["application/json"]["examples"].values()]
        response_status = try_it_out(browser, "postProducts", json.dumps(body), examples)
        browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(
            By.CSS_SELECTOR, "#operations-default-postProducts .live-responses-table"))
        browser.save_screenshot(str(tmp_path / "docs-try-it-out.png"))
        assert response_status == "201"
        request_url = browser.find_element(
            By.CSS_SELECTOR, "#operations-default-postProducts .request-url pre").text
        assert request_url == f"{gateway}/inventory/v1/products"

        created = client.get(f"/inventory/v1/products/{sku}")
        assert created.status == 200, created
        assert created.json()["name"] == "Made in the docs"
        assert not console_errors(browser)
    finally:
        browser.save_screenshot(str(tmp_path / "docs.png"))


def authorize(driver: Chrome, token: str) -> None:
    """"Authorize" with a bearer token, as a user does: the button, the value, Authorize,
    Close."""
    driver.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize").click()
    field = wait(driver, "the Authorize dialog",
                 lambda d: d.find_element(By.CSS_SELECTOR, ".modal-ux .auth-container input"))
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, ".modal-ux .auth-btn-wrapper .authorize").click()
    # Taken: the dialog offers to log out instead.
    wait(driver, "the token to be taken",
         lambda d: [button for button in d.find_elements(
             By.CSS_SELECTOR, ".modal-ux .auth-btn-wrapper button") if button.text == "Logout"])
    driver.find_element(By.CSS_SELECTOR, ".modal-ux .btn-done").click()
    wait(driver, "the Authorize dialog to close",
         lambda d: not d.find_elements(By.CSS_SELECTOR, ".modal-ux"))
    locked = driver.find_element(By.CSS_SELECTOR, ".auth-wrapper .authorize")
    assert "locked" in (locked.get_attribute("class") or "")


def try_it_out(driver: Chrome, operation_id: str, body: str, examples: list[Any]) -> str:
    """Open an operation, "Try it out" with `body`, "Execute": the status the page shows."""
    block = f"#operations-default-{operation_id}"
    driver.find_element(By.CSS_SELECTOR, f"{block} .opblock-summary").click()
    button = wait(driver, "the Try it out button",
                  lambda d: d.find_element(By.CSS_SELECTOR, f"{block} .try-out__btn"))
    button.click()
    editor: WebElement = wait(driver, "the request body editor",
                              lambda d: d.find_element(By.CSS_SELECTOR,
                                                       f"{block} textarea.body-param__text"))
    # It starts from one of the document's examples.
    assert json.loads(editor.get_attribute("value") or "null") in examples
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys(Keys.DELETE)
    editor.send_keys(body)
    assert json.loads(editor.get_attribute("value") or "null") == json.loads(body)
    driver.find_element(By.CSS_SELECTOR, f"{block} .execute").click()
    status: str = wait(driver, "the response to show",
                       lambda d: d.find_element(By.CSS_SELECTOR,
                                                f"{block} .live-responses-table "
                                                ".response .response-col_status").text.strip())
    return status.split()[0]
