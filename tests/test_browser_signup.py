"""The demo sign-up flow in a real headless Chromium: captcha → send → code → create account.

The demo runs in a real HTTP server on a free loopback port with the console gateway (the test
reads the "sent" code from it) and a captcha renderer that draws real images while remembering
their text (the test plays the person who reads it). Chromium and chromedriver are Debian's
(``apt-get install chromium chromium-driver``); Selenium is pointed at them explicitly and runs
offline, so nothing is ever downloaded. Screenshots of each step go to ``artifacts/browser/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from examples.signup.app import create_demo_app
from otp_service import ConsoleGateway, Settings
from otp_service.captcha_render import ImageRenderer
from tests.conftest import RecordingRenderer

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "browser"
PHONE = "+8613812345678"
MASKED = "+86138****5678"
WAIT_SECONDS = 15
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=900,1000",
)


def require_chromium() -> None:
    """Fail in CI, skip on a laptop, when the browser or its driver is not installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if not missing:
        return
    message = (
        f"headless Chromium test needs {', '.join(missing)}: "
        "apt-get install -y chromium chromium-driver"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Demo:
    url: str
    gateway: ConsoleGateway
    renderer: RecordingRenderer


@pytest.fixture
def demo(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings]
) -> Iterator[Demo]:
    """The demo app in a real server on a free port, stopped even when the test fails.

    Parametrise indirectly with settings overrides (e.g. ``{"captcha_kind": "pow"}``).
    """
    gateway = ConsoleGateway()
    renderer = RecordingRenderer(ImageRenderer())
    overrides = getattr(request, "param", {})
    app = create_demo_app(
        settings_factory(**{"captcha_mode": "always", **overrides}),
        gateway=gateway,
        captcha_renderer=renderer,
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="demo-server", daemon=True)
    thread.start()
    try:
        yield Demo(f"http://127.0.0.1:{server.server_port}", gateway, renderer)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Chromium driven by Debian's chromedriver; quit, and checked gone, afterwards."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    # Selenium Manager must never run (it would download a driver or a browser).
    monkeypatch.setenv("SE_OFFLINE", "true")
    profile = tmp_path / "chromium-profile"
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        leftovers = stop_leftover_processes(str(profile))
        assert not leftovers, f"Chromium processes outlived driver.quit(): {leftovers}"


def stop_leftover_processes(marker: str) -> list[int]:
    """PIDs of processes started with our private profile still alive after a grace period;
    they are killed (they are ours: the profile path is unique to this test)."""
    deadline = time.monotonic() + 5
    while True:
        alive = processes_with(marker)
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return alive


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def shoot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def post_form(url: str, fields: dict[str, str]) -> int:
    """Status of a plain form POST (a replay made outside the browser)."""
    body = urllib.parse.urlencode(fields).encode()
    try:
        with urllib.request.urlopen(url, data=body, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_signup_flow_in_headless_chromium(browser: Any, demo: Demo) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_SECONDS)

    def image_loaded(driver: Any) -> bool:
        return bool(
            driver.execute_script(
                "const img = document.getElementById('captcha-image');"
                "return img.complete && img.naturalWidth > 0;"
            )
        )

    # 1. The page arrives with its captcha picture (no broken image before the script runs),
    #    with an audio alternative.
    with urllib.request.urlopen(demo.url + "/", timeout=10) as response:  # noqa: S310
        first_paint = response.read().decode()
    assert re.search(r'<img id="captcha-image"[^>]* src="/otp/captcha/[0-9a-f]+\.png"', first_paint)
    browser.get(demo.url + "/")
    wait.until(image_loaded)
    audio = browser.find_element(By.ID, "captcha-audio").get_attribute("href")
    assert audio.startswith(f"{demo.url}/otp/captcha/") and audio.endswith(".wav")
    shoot(browser, "01-page")

    # 2. "Listen" pays the audio's proof of work in the browser, then plays the challenge.
    browser.find_element(By.ID, "captcha-audio").click()
    wait.until(
        lambda driver: (
            driver.find_element(By.ID, "captcha-player").get_attribute("src") or ""
        ).startswith("blob:")
    )
    assert browser.find_element(By.ID, "captcha-player").is_displayed()
    assert demo.renderer.spoken == [demo.renderer.last_answer]

    # 3. A misread picture is explained in words, and a new picture replaces it.
    browser.find_element(By.ID, "phone").send_keys("138 1234 5678")
    first_image = browser.find_element(By.ID, "captcha-image").get_attribute("src")
    browser.find_element(By.ID, "captcha-answer").send_keys("WRONG")
    browser.find_element(By.ID, "send-code").click()
    wait.until(seen.text_to_be_present_in_element((By.ID, "status"), "did not match the picture"))
    assert "captcha_invalid" not in browser.find_element(By.ID, "status").text
    wait.until(
        lambda driver: (
            driver.find_element(By.ID, "captcha-image").get_attribute("src") != first_image
        )
    )
    wait.until(image_loaded)

    # 4. The person reads the captcha and asks for a code; the message and the focus move to
    #    the code field.
    browser.find_element(By.ID, "captcha-answer").send_keys(demo.renderer.last_answer.lower())
    shoot(browser, "02-captcha-answered")
    browser.find_element(By.ID, "send-code").click()
    wait.until(seen.visibility_of_element_located((By.ID, "verify-form")))
    wait.until(seen.text_to_be_present_in_element((By.ID, "code-sent"), MASKED))
    assert browser.switch_to.active_element.get_attribute("id") == "code"
    assert browser.find_element(By.ID, "code").get_attribute("aria-describedby") == "code-sent"
    shoot(browser, "03-code-sent")
    assert [message.to for message in demo.gateway.sent] == [PHONE]

    # 5. The code from the SMS verifies the number.
    code = demo.gateway.last_code(PHONE)
    assert code is not None
    browser.find_element(By.ID, "code").send_keys(code)
    browser.find_element(By.ID, "verify").click()
    wait.until(seen.visibility_of_element_located((By.ID, "account-form")))
    token = browser.find_element(By.ID, "otp-token").get_attribute("value")
    assert token
    shoot(browser, "04-verified")

    # 6. The protected route creates the account for the verified number.
    browser.find_element(By.ID, "name").send_keys("Ada")
    browser.find_element(By.ID, "create-account").click()
    welcome = wait.until(seen.visibility_of_element_located((By.ID, "welcome")))
    assert welcome.text == "Welcome, Ada!"
    assert browser.find_element(By.ID, "verified-phone").text == MASKED
    assert PHONE not in browser.page_source
    shoot(browser, "05-welcome")

    # 7. The same create-account request again is refused, in words: the token worked once.
    browser.get(demo.url + "/")
    browser.execute_script(
        "const form = document.getElementById('account-form');"
        "document.getElementById('otp-token').value = arguments[0];"
        "form.submit();",
        token,
    )
    refusal = wait.until(seen.visibility_of_element_located((By.ID, "refusal")))
    assert refusal.get_attribute("data-code") == "token_used"
    assert "already used" in refusal.text
    assert "token_used" not in browser.find_element(By.TAG_NAME, "body").text
    shoot(browser, "06-replay-refused")
    assert post_form(demo.url + "/account", {"otp_token": token, "name": "Eve"}) == 401


@pytest.mark.parametrize(
    "demo",
    [
        pytest.param({"captcha_kind": "pow"}, id="pow"),
        pytest.param({"captcha_kind": "both"}, id="image-and-pow"),
    ],
    indirect=True,
)
def test_the_page_solves_the_proof_of_work_in_the_browser(browser: Any, demo: Demo) -> None:
    """WebCrypto PBKDF2 in Chromium solves the ALTCHA challenge the service checks."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_SECONDS)
    browser.get(demo.url + "/")
    fieldset = browser.find_element(By.CSS_SELECTOR, "fieldset.captcha")
    wants_image = bool(demo.renderer.texts)
    assert fieldset.is_displayed() == wants_image
    browser.find_element(By.ID, "phone").send_keys("138 1234 5678")
    if wants_image:
        browser.find_element(By.ID, "captcha-answer").send_keys(demo.renderer.last_answer)
    browser.find_element(By.ID, "send-code").click()
    wait.until(seen.text_to_be_present_in_element((By.ID, "code-sent"), MASKED))
    assert [message.to for message in demo.gateway.sent] == [PHONE]
    code = demo.gateway.last_code(PHONE)
    assert code is not None
    browser.find_element(By.ID, "code").send_keys(code)
    browser.find_element(By.ID, "verify").click()
    wait.until(seen.visibility_of_element_located((By.ID, "account-form")))
    browser.find_element(By.ID, "create-account").click()
    assert wait.until(seen.visibility_of_element_located((By.ID, "welcome"))).text == "Welcome!"
