"""Issue 19 end to end: web access on a dynamic local cluster with real SGE and Spark, watched by a
real browser (Debian chromium through selenium). One cluster for the module: the page shows new
members and the plot draws the scale-up without a reload, a job named like markup stays text, the
Spark master UI loads through /spark/, and `web-access disable` closes the port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchspark.paths import conf_file
from tests.browser import chromium, screenshot, wait_for
from tests.e2e.cluster_helpers import qsub, sge
from tests.e2e.localcluster import LocalCluster, job_script
from tests.e2e.spark_helpers import finish_kernel, master_json, start_kernel
from tests.harness import port_open, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The name first; SGE refuses '/' in job names, so the next ones are markup without it.
MARKUP_NAMES = ("<script>alert(1)</script>", "<b>alert(1)<b>", "<img src=x onerror=alert(1)>")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    lc = LocalCluster(tmp_path_factory.mktemp("web-cluster"),
                      ["--mode", "dynamic", "--min", "0", "--max", "2", "--cores", "2", "--memory", "3G",
                       "--scratch-size", "64M", "--allow-small-scratch", "--min-age", "10", "--idle", "600",
                       "--interval", "2"])
    try:
        lc.up()
        yield lc
    finally:
        sge("qdel", "-u", "root", check=False)
        lc.down()


@pytest.fixture(scope="module")
def base_url(cluster: LocalCluster) -> str:
    status = cluster.ctl_json("cluster", "web-access", "enable")
    assert status["enabled"]
    return str(status["base_url"])


@pytest.fixture(scope="module")
def browser(cluster: LocalCluster, base_url: str) -> Iterator[Any]:
    from selenium.webdriver.common.by import By

    with chromium() as driver:
        driver.get(cluster.ctl_json("cluster", "web-access", "url")["url"])
        wait_for(driver, lambda d: "root" in d.find_element(By.ID, "whoami").text, 30, "the page after login")
        yield driver


def view(driver: Any, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"a[data-view={name}]").click()


def plotted_members(driver: Any) -> int:
    """How many samples of the plot draw at least one member."""
    return int(driver.execute_script(
        "const p = document.getElementById('plot-members');"
        "if (!p || !p.data) return 0;"
        "const traces = p.data.filter(t => t.name.startsWith('members '));"
        "if (!traces.length) return 0;"
        "return traces[0].y.map((_, i) => traces.reduce((n, t) => n + t.y[i], 0)).filter(n => n > 0).length;"))


def test_new_members_and_the_scale_up_appear_without_a_reload(cluster: LocalCluster, browser: Any,
                                                             tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.execute_script("window.__sameDocument = 'yes'")
    view(browser, "members")
    script = job_script(Path("/data/e2e-web/array.sh"), "sleep 40")
    qsub("-t", "1-2", "-l", "static_cores=1,static_mem=256M", "-o", "/dev/null", "-e", "/dev/null", str(script))
    wait_for(browser, lambda d: "READY" in d.find_element(By.ID, "view-members").text, 240, "a READY member row")
    view(browser, "plots")
    wait_for(browser, lambda d: plotted_members(d) >= 4, 120, "the plot to draw the new members (4 samples)")
    assert browser.execute_script("return window.__sameDocument") == "yes"  # never reloaded
    annotations = browser.execute_script("return document.getElementById('plot-members').layout.annotations"
                                         ".map(a => a.text)")
    assert any(str(a).startswith("scale-up") for a in annotations), annotations
    screenshot(browser, "web-scale-up.png")


def submit_named_like_markup(script: Path) -> tuple[int, str]:
    """A held job with the first of MARKUP_NAMES SGE accepts (it refuses '/' in job names)."""
    refused = []
    for name in MARKUP_NAMES:
        proc = sge("qsub", "-terse", "-h", "-N", name, "-o", "/dev/null", "-e", "/dev/null", str(script), check=False)
        if proc.returncode == 0:
            return int(proc.stdout.strip().split(".")[0]), name
        refused.append(f"{name!r}: {(proc.stderr or proc.stdout).strip()}")
    raise AssertionError("SGE refused every markup job name: " + "; ".join(refused))


def test_a_job_named_like_markup_is_shown_as_text(cluster: LocalCluster, browser: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException, TimeoutException
    from selenium.webdriver.common.by import By

    job_id, name = submit_named_like_markup(job_script(Path("/data/e2e-web/held.sh"), "true"))
    try:
        view(browser, "jobs")
        try:
            wait_for(browser, lambda d: name in d.find_element(By.ID, "view-jobs").text, 60, "the job's name as text")
        except TimeoutException as exc:  # say what the page and SGE showed instead
            qstat = sge("qstat", "-u", "*", "-xml", "-r", check=False).stdout
            page = browser.find_element(By.ID, "view-jobs").text
            raise AssertionError(f"job {job_id} named {name!r} not shown as text; the page shows:\n{page}\n"
                                 f"qstat -xml:\n{qstat[:3000]}") from exc
        for tag in ("script", "b", "img"):
            assert not browser.find_elements(By.CSS_SELECTOR, f"#view-jobs td {tag}"), tag
        assert "on hold" in browser.find_element(By.ID, "view-jobs").text
        time.sleep(1)
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018 - reading it is the check
    finally:
        sge("qdel", str(job_id), check=False)


def test_spark_master_ui_through_the_proxy_lists_the_workers(cluster: LocalCluster, browser: Any,
                                                            base_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    wait_until(lambda: conf_file("remote").exists(), 60, "the written spark-defaults.conf files")
    go = Path("/tmp/bench-web-spark-go")
    go.unlink(missing_ok=True)
    # A Remote kernel's application holds executors (slot workers on the members) until `go` exists.
    cell = (f"import os, time\nprint('N', sc.parallelize(range(8), 2).count())\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.5)")
    kernel = start_kernel("remote", [cell])
    try:
        wait_until(lambda: master_json().get("aliveworkers", 0) >= 1, 300, "a Spark worker", interval_s=2)
        browser.get(base_url + "spark/")
        wait_for(browser, lambda d: "Spark Master" in d.title, 30, "the Spark master UI")
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Alive Workers: 0" not in body and "worker-" in body, body[:2000]
        links = [a.get_attribute("href") or "" for a in browser.find_elements(By.TAG_NAME, "a")]
        worker_links = [link for link in links if "/spark/proxy/worker-" in link]
        assert worker_links and all(link.startswith(base_url) for link in worker_links), links
        browser.get(worker_links[0])  # Spark's own link, through the same proxy and login
        wait_for(browser, lambda d: "Spark Worker" in d.title, 30, "the worker's UI through the master")
        screenshot(browser, "web-spark-worker.png")
    finally:
        go.touch()
        try:
            finish_kernel(kernel, timeout_s=300)
        finally:
            go.unlink(missing_ok=True)


def test_disable_closes_the_port(cluster: LocalCluster, base_url: str) -> None:
    assert port_open(base_url)
    cluster.ctl("cluster", "web-access", "disable")
    wait_until(lambda: not port_open(base_url), 10, "the web port to close")
    assert "disabled" in cluster.ctl("cluster", "status").stdout
