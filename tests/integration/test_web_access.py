"""Issue 19 (web access), without SGE: a real bench-manager process serving HTTPS with the cluster
certificate; workspace-ctl enables, disables and prints login links; an HTTPS client trusting the
cluster CA plays the browser (cookies by hand, so every attribute is checked)."""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ControlPlane, free_port, port_open, wait_until


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    root = Path(tempfile.mkdtemp(prefix="bench-web-"))
    cp = ControlPlane(root, extra_manager_args=["--web-port", str(free_port()), "--web-sample-interval", "0.5"])
    try:
        cp.start_manager()
        wait_until(cp._manager_answers, 20, "the manager to answer")
        for name, role in (("webviewer", "viewer"), ("webadmin", "administrator")):
            (root / f"{name}.credential").write_text(cp.trust.add_user(cp.address, name, role) + "\n")
        yield cp
    finally:
        cp.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def credential(plane: ControlPlane, name: str) -> Path:
    return plane.root / f"{name}.credential"


def request(plane: ControlPlane, url: str, *, method: str = "GET", body: Any = None, cookie: str = "",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context(cafile=str(plane.trust.ca))
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if cookie:
        req.add_header("Cookie", cookie)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirect())
    try:
        with opener.open(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def ctl_json(plane: ControlPlane, *args: str, as_user: str | None = None) -> dict[str, Any]:
    result = plane.ctl(*args, "--output", "json", token_file=credential(plane, as_user) if as_user else None)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def login(plane: ControlPlane, link: str) -> tuple[int, dict[str, str]]:
    base, _, fragment = link.partition("#t=")
    status, headers, _ = request(plane, base, method="POST", body={"token": fragment},
                                 headers={"X-Bench-Web": "1"})
    return status, headers


def session_cookie(headers: dict[str, str]) -> str:
    return headers["Set-Cookie"].split(";")[0]


def enabled_url(plane: ControlPlane) -> str:
    status = ctl_json(plane, "cluster", "web-access", "enable")
    assert status["enabled"] and status["base_url"].startswith("https://127.0.0.1:")
    return str(status["base_url"])


def test_disabled_by_default_and_only_an_administrator_enables_it(plane: ControlPlane) -> None:
    assert ctl_json(plane, "cluster", "web-access", "status").get("enabled", False) is False
    refused = plane.ctl("cluster", "web-access", "enable", token_file=credential(plane, "webviewer"))
    assert refused.returncode != 0 and "administrator" in refused.stderr
    no_link = plane.ctl("cluster", "web-access", "url")
    assert no_link.returncode != 0 and "web-access enable" in no_link.stderr
    url = enabled_url(plane)
    assert port_open(url)
    status = plane.ctl("cluster", "status")
    assert url in status.stdout, status.stdout


def test_one_time_link_logs_in_once_with_a_strict_cookie(plane: ControlPlane) -> None:
    base = enabled_url(plane)
    link = ctl_json(plane, "cluster", "web-access", "url", as_user="webadmin")["url"]
    assert link.startswith(f"{base}login#t=") and "?" not in link  # the secret is never in a request line
    status, headers = login(plane, link)
    assert status == 200
    cookie_attrs = headers["Set-Cookie"].lower()
    for attribute in ("httponly", "secure", "samesite=strict", "path=/"):
        assert attribute in cookie_attrs
    cookie = session_cookie(headers)
    status, _, body = request(plane, f"{base}api/overview", cookie=cookie)
    assert status == 200 and json.loads(body)["web_access_url"] == base
    assert json.loads(request(plane, f"{base}api/whoami", cookie=cookie)[2]) == {"user": "webadmin",
                                                                                 "role": "administrator"}
    assert login(plane, link)[0] == 403  # reused
    entries = [json.loads(line) for line in (plane.data_root / "logs" / "activity.log").read_text().splitlines()]
    logins = [(e["user"], e["result"]) for e in entries if e["action"] == "web-access login"]
    assert ("webadmin", "ok") in logins and ("unknown", "refused") in logins


def test_without_a_session_pages_redirect_and_the_api_answers_401(plane: ControlPlane) -> None:
    base = enabled_url(plane)
    status, headers, _ = request(plane, base)
    assert status == 303 and headers["Location"] == "/login"
    status, headers, body = request(plane, f"{base}login")
    assert status == 200 and b"web-access url" in body and "script-src 'self'" in headers["Content-Security-Policy"]
    assert request(plane, f"{base}api/members")[0] == 401
    assert request(plane, f"{base}api/members", cookie="__Host-bench_session=forged")[0] == 401
    assert request(plane, f"{base}api/members", headers={"Authorization": "Bearer bcu_forged"})[0] == 401


def test_a_viewer_cannot_act_through_the_api(plane: ControlPlane) -> None:
    base = enabled_url(plane)
    bearer = {"Authorization": "Bearer " + credential(plane, "webviewer").read_text().strip()}
    assert request(plane, f"{base}api/members", headers=bearer)[0] == 200
    status, _, body = request(plane, f"{base}api/web-access/disable", method="POST", headers=bearer, body={})
    assert status == 403 and b"administrator" in body
    link = ctl_json(plane, "cluster", "web-access", "url", as_user="webviewer")["url"]
    cookie = session_cookie(login(plane, link)[1])
    status, _, _ = request(plane, f"{base}api/web-access/disable", method="POST", cookie=cookie,
                           headers={"X-Bench-Web": "1"}, body={})
    assert status == 403
    assert port_open(base)


def test_cookie_requests_that_change_state_need_the_custom_header(plane: ControlPlane) -> None:
    base = enabled_url(plane)
    link = ctl_json(plane, "cluster", "web-access", "url", as_user="webadmin")["url"]
    cookie = session_cookie(login(plane, link)[1])
    status, _, body = request(plane, f"{base}api/web-access/disable", method="POST", cookie=cookie, body={})
    assert status == 403 and b"X-Bench-Web" in body
    assert port_open(base)


def test_history_samples_accumulate(plane: ControlPlane) -> None:
    base = enabled_url(plane)
    bearer = {"Authorization": "Bearer " + credential(plane, "webviewer").read_text().strip()}

    def samples() -> list[Any]:
        return list(json.loads(request(plane, f"{base}api/history?hours=1", headers=bearer)[2])["samples"])
    wait_until(lambda: len(samples()) >= 3, 15, "three history samples")


def test_disable_closes_the_port_and_ends_sessions(plane: ControlPlane) -> None:
    base = enabled_url(plane)
    link = ctl_json(plane, "cluster", "web-access", "url", as_user="webadmin")["url"]
    cookie = session_cookie(login(plane, link)[1])
    status = ctl_json(plane, "cluster", "web-access", "disable")
    assert not status.get("enabled", False) and not status.get("base_url")
    assert not port_open(base)
    assert "disabled" in plane.ctl("cluster", "status").stdout
    base = enabled_url(plane)  # same port again; the old session is gone
    assert request(plane, f"{base}api/overview", cookie=cookie)[0] == 401
    # an administrator's browser can close it too (and the answer arrives before the port closes)
    link = ctl_json(plane, "cluster", "web-access", "url", as_user="webadmin")["url"]
    cookie = session_cookie(login(plane, link)[1])
    status_code, _, _ = request(plane, f"{base}api/web-access/disable", method="POST", cookie=cookie,
                                headers={"X-Bench-Web": "1"}, body={})
    assert status_code == 200
    wait_until(lambda: not port_open(base), 10, "the port to close")
    assert ctl_json(plane, "cluster", "web-access", "status").get("enabled", False) is False


def test_browser_logs_in_with_the_link_and_stays_live(plane: ControlPlane) -> None:
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, console_errors, screenshot, wait_for

    enabled_url(plane)
    link = ctl_json(plane, "cluster", "web-access", "url", as_user="webadmin")["url"]
    with chromium() as driver:
        driver.get(link)
        wait_for(driver, lambda d: d.current_url.endswith("/") and "webadmin" in d.find_element(By.ID, "whoami").text,
                 20, "the page after login")
        assert "#t=" not in driver.current_url
        wait_for(driver, lambda d: d.find_element(By.ID, "live").text == "live", 10, "the event stream")
        wait_for(driver, lambda d: "usable cores" in d.find_element(By.ID, "view-overview").text, 10, "overview")
        driver.find_element(By.CSS_SELECTOR, "a[data-view=plots]").click()
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#plot-members .main-svg"), 15, "the plot")
        screenshot(driver, "web-control-plane-plots.png")
        assert not [e for e in console_errors(driver) if "Content Security Policy" in e], console_errors(driver)
        # the link was used up by the browser
        driver.delete_all_cookies()
        driver.get(link)
        wait_for(driver, lambda d: "refused" in d.find_element(By.ID, "login-status").text, 10, "reused link refused")
