"""The dashboard as a user sees it: a real `wsgistack up` (an app server, the proxy, two programs) with a
[dashboard], driven by a real headless Chromium (Debian's chromium and chromium-driver) through selenium.

One stack and one browser for one test, in steps: log in, see every program, stop one and start it, follow a log
that grows, search it; everything refused without a session; an action without its CSRF token refused; the charts drawn from the app's requests ([metrics] listen).
With WSGISTACK_SCREENSHOTS=docs/img the pages are saved there as dashboard-*.png (docs/dashboard.md shows them).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from polling import wait_for
from stacks import Stack, free_port, get, write_release

from wsgistack.observe.dashboard.sessions import COOKIE

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
USER, PASSWORD = "admin", "correct horse"
ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("app:app", "proxy:proxy", "ticker:ticker", "idle:idle")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By

if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    if os.environ.get("CI"):
        pytest.fail("CI needs Debian's chromium and chromium-driver (.ci/run installs them)", pytrace=False)
    pytest.skip("no chromium/chromedriver here: apt-get install chromium chromium-driver", allow_module_level=True)

TICKER = "import itertools, time\nfor i in itertools.count():\n    print(f'tick {i:05d}', flush=True)\n" \
         "    time.sleep(0.1)\n"


class Dashboard:
    """The stack, its dashboard's address, and a logged-out browser."""

    def __init__(self, tmp: Path):
        self.port, self.dashboard_port, metrics_port = free_port(), free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.dashboard_port}"
        write_release(tmp, "hello")
        (tmp / "ticker.py").write_text(TICKER)
        self.stack = Stack(tmp, f'''
[supervisor]
childlogdir = "{tmp}"

[serve]
app = "hello:app"
workers = 1

[proxy]
listen = ["127.0.0.1:{self.port}"]

[programs.ticker]
command = ["{sys.executable}", "{tmp / 'ticker.py'}"]
startsecs = 0.2

[programs.idle]
command = ["{sys.executable}", "-c", "import time; time.sleep(3600)"]
startsecs = 0.2
depends_on = ["app"]

[metrics]
listen = "127.0.0.1:{metrics_port}"

[dashboard]
listen = "127.0.0.1:{self.dashboard_port}"
username = "{USER}"
password = "{PASSWORD}"
''')
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1000"):
            options.add_argument(argument)
        self.driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
        self.shots = os.environ.get("WSGISTACK_SCREENSHOTS")

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            assert self.stack.stop() == 0

    def screenshot(self, name: str) -> None:
        if self.shots:
            folder = ROOT / self.shots
            folder.mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(folder / f"dashboard-{name}.png"))

    def text(self, css: str) -> str:
        """The text of the first element `css` selects, "" while there is none (the page is loading)."""
        try:
            return self.driver.find_element(By.CSS_SELECTOR, css).text
        except WebDriverException:
            return ""

    def state(self, process: str) -> str:
        return self.text(f'tr[data-process="{process}"] [data-field="statename"]')

    def request(self, method: str, path: str, form: dict | None = None, cookie: str | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        """A raw request beside the browser."""
        connection = http.client.HTTPConnection("127.0.0.1", self.dashboard_port, timeout=30)
        fields = {**(headers or {}), **({"Cookie": f"{COOKIE}={cookie}"} if cookie else {})}
        if form is not None:
            fields["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=urlencode(form) if form is not None else None, headers=fields)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


def test_the_dashboard_in_a_browser(tmp_path):
    # one test, so one stack and one browser whatever the test runner's workers do; each step is a function
    dashboard = Dashboard(tmp_path)
    try:
        dashboard.stack.wait_running(*(name.split(":")[0] for name in PROGRAMS))
        every_page_and_action_is_refused_without_a_session(dashboard)
        log_in_see_every_program_stop_and_start_one(dashboard)
        a_log_followed_live_and_searched(dashboard)
        an_action_without_the_csrf_token_is_refused(dashboard)
        the_charts_follow_the_traffic(dashboard)
    finally:
        dashboard.close()


def every_page_and_action_is_refused_without_a_session(dashboard: Dashboard) -> None:
    for path in ("/", "/program/ticker:ticker"):
        status, headers, _ = dashboard.request("GET", path)
        assert status == 303 and headers["Location"].startswith("/login")
    for path in ("/api/status", "/api/tail?name=ticker:ticker", "/api/search?name=ticker:ticker&q=t",
                 "/api/metrics"):
        assert dashboard.request("GET", path)[0] == 401, path
    for path in ("/action", "/api/action", "/logout"):
        assert dashboard.request("POST", path, {"action": "stop", "target": "all"})[0] == 403, path
    assert dashboard.stack.status()["idle"]["statename"] == "RUNNING"


def log_in_see_every_program_stop_and_start_one(dashboard: Dashboard) -> None:
    driver = dashboard.driver
    driver.get(dashboard.base + "/")
    wait_for(lambda: driver.current_url.startswith(dashboard.base + "/login"), message="the login form")
    driver.find_element(By.ID, "username").send_keys(USER)
    driver.find_element(By.ID, "password").send_keys("wrong")
    driver.find_element(By.ID, "login").click()
    assert "Wrong username or password" in wait_for(lambda: dashboard.text("#login-error"), message="the refusal")
    dashboard.screenshot("login")
    driver.find_element(By.ID, "username").send_keys(USER)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login").click()
    wait_for(lambda: all(dashboard.state(name) == "RUNNING" for name in PROGRAMS), message="every program RUNNING")
    assert "app" in dashboard.text('tr[data-process="idle:idle"]')  # what it depends on
    dashboard.screenshot("overview")

    driver.find_element(By.CSS_SELECTOR, 'tr[data-process="idle:idle"] button[value="stop"]').click()
    wait_for(lambda: dashboard.state("idle:idle") == "STOPPED", message="idle STOPPED on the page")
    assert "stop idle:idle" in dashboard.text("#flash")
    assert dashboard.stack.status()["idle"]["statename"] == "STOPPED"
    driver.find_element(By.CSS_SELECTOR, 'tr[data-process="idle:idle"] button[value="start"]').click()
    wait_for(lambda: dashboard.state("idle:idle") == "RUNNING", message="idle RUNNING again on the page")


def a_log_followed_live_and_searched(dashboard: Dashboard) -> None:
    driver = dashboard.driver
    driver.get(dashboard.base + "/program/ticker:ticker")
    first = wait_for(lambda: dashboard.text("#log"), message="the ticker's log")
    last_tick = first.strip().splitlines()[-1]
    wait_for(lambda: last_tick != dashboard.text("#log").strip().splitlines()[-1], message="the log growing")
    dashboard.screenshot("program")
    box = driver.find_element(By.ID, "search")
    box.send_keys("tick 0000")
    box.submit()
    matches = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#matches li"), message="search results")
    assert [match.text for match in matches] == [f"tick {n:05d}" for n in range(10)]


def an_action_without_the_csrf_token_is_refused(dashboard: Dashboard) -> None:
    cookie = dashboard.driver.get_cookie(COOKIE)
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    session = cookie["value"]
    assert dashboard.request("GET", "/api/status", cookie=session)[0] == 200  # the session is good
    origin = {"Origin": dashboard.base}
    for path in ("/action", "/api/action"):
        status, _, body = dashboard.request("POST", path, {"action": "stop", "target": "all"}, session, origin)
        assert (status, body) == (403, b"missing or wrong CSRF token\n")
    _, _, body = dashboard.request("GET", "/api/status", cookie=session)
    assert {r["statename"] for r in json.loads(body)["processes"]} == {"RUNNING"}


def the_charts_follow_the_traffic(dashboard: Dashboard) -> None:
    driver = dashboard.driver
    driver.get(dashboard.base + "/")

    def plotted():
        assert get(dashboard.port)[0] == 200  # traffic through the proxy, while the page polls
        return driver.find_elements(By.CSS_SELECTOR, '#chart-rps polyline[data-series="app"]') and \
            int(driver.find_element(By.ID, "charts-status").get_attribute("data-samples") or 0) >= 3

    wait_for(plotted, timeout=30, interval=0.05, message="a line of app's requests on the chart")
    rows = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#apps tbody tr"), message="the per-app table")
    assert rows[0].text.startswith("app ")
    driver.execute_script("document.getElementById('traffic').scrollIntoView()")
    dashboard.screenshot("charts")
