"""The dashboard in a real browser: Debian's Chromium, headless, driven by Selenium.

Starts ``nas serve`` on a free loopback port with its own SQLite file, submits a small job
from the form, waits for the Pareto plot, clicks a point and checks the architecture page.
Screenshots go to ``test-artifacts/`` (or ``$NAS_TEST_ARTIFACTS``). Skipped, with the reason,
where Chromium, chromedriver or Selenium is missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def test_submit_a_job_from_the_form_and_follow_a_pareto_point(served):
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip(f"no Chromium/chromedriver at {CHROMIUM} / {DRIVER} (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, token = served
    shots = Path(os.environ.get("NAS_TEST_ARTIFACTS", "test-artifacts"))
    shots.mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=opts)
    from selenium.common.exceptions import StaleElementReferenceException

    # the plot is redrawn as rounds land: an element read mid-redraw is stale, not an error
    wait = WebDriverWait(driver, 90, ignored_exceptions=(StaleElementReferenceException,))
    try:
        driver.get(url + "/")
        wait.until(lambda d: d.find_element(By.ID, "spec").get_attribute("value").strip().startswith("{"))
        field = driver.find_element(By.ID, "token")
        field.clear()
        field.send_keys(token)
        driver.find_element(By.ID, "space").send_keys("nb201")
        driver.save_screenshot(str(shots / "01-jobs-form.png"))
        driver.find_element(By.ID, "submit").click()
        link = wait.until(ec.element_to_be_clickable((By.ID, "new-job")))
        link.click()
        wait.until(lambda d: int(d.find_element(By.ID, "plot").get_attribute("data-ready") or 0) > 0)
        wait.until(lambda d: "completed" in d.find_element(By.ID, "state").text)
        driver.save_screenshot(str(shots / "02-job-pareto.png"))
        points = driver.find_elements(By.CSS_SELECTOR, "#plot .scatterlayer .trace:last-child .points path")
        assert points, "the Pareto front trace has no points"
        # the page fetched the trials round by round while the job ran: every complete trial is
        # plotted exactly once (dominated + front)
        import json
        import urllib.request

        jid = driver.current_url.rstrip("/").rsplit("/", 1)[1]
        req = urllib.request.Request(f"{url}/api/v1/jobs/{jid}/trials?state=complete&limit=1",
                                     headers={"Authorization": f"Bearer {token}"})
        total = json.load(urllib.request.urlopen(req))["total"]
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#plot .scatterlayer .points path")) == total)
        # another axis redraws from the trials already fetched, without adding any twice
        from selenium.webdriver.support.ui import Select

        ax = Select(driver.find_element(By.ID, "ax"))
        other = next(o.text for o in ax.options if o.text != ax.first_selected_option.text)
        ax.select_by_visible_text(other)
        wait.until(lambda d: other in d.find_element(By.CSS_SELECTOR, "#plot .xtitle").text)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#plot .scatterlayer .points path")) == total
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(driver).move_to_element(points[0]).pause(0.3).click().perform()  # a real mouse click
        wait.until(ec.url_contains("/architectures/"))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#choices tr")) == 6)
        wait.until(lambda d: "materialize" in d.find_element(By.ID, "snippet").text)
        wait.until(lambda d: "accuracy" in d.find_element(By.ID, "metrics").text)
        driver.save_screenshot(str(shots / "03-architecture.png"))
    finally:
        driver.quit()
