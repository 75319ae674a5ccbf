"""The web UI in a real headless Chromium (the OS package, driven by selenium through the OS chromedriver).

Opens the global asset lineage of `judge-assets ui` on the small two-batch source of
:mod:`judge_assets_tests.test_ui`, clicks **Materialize all…**, reads the partition dialog, picks
**All**, clicks **Launch backfill**, and checks that one run starts loading every annotation
batch. Screenshots of the dialog and of the backfill page are saved in the test's tmp folder.
"""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest

from judge_assets_tests.test_ui import BACKFILL, UI, partition_keys, small_source, wait_for

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Chromium and its driver: apt-get install -y chromium chromium-driver (.ci/run does)")
    pytest.skip("needs Chromium: apt-get install -y chromium chromium-driver", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser(tmp_path):
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000",
                     f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _button(driver, text: str, timeout_s: float = 60):
    return WebDriverWait(driver, timeout_s).until(
        ec.element_to_be_clickable((By.XPATH, f"//button[normalize-space(.)='{text}']"))
    )


def _dismiss_welcome(driver) -> None:
    """The first visit asks to join the Dagster community (a modal over the page): Skip."""
    try:
        _button(driver, "Skip", timeout_s=15).click()
    except TimeoutException:
        pass


@pytest.mark.timeout(600)
def test_materialize_all_in_the_browser_loads_every_batch_in_one_run(tmp_path, browser):
    ui = UI(tmp_path, small_source(tmp_path / "source"))
    try:
        ui.wait_until_serving()
        keys = partition_keys(ui)
        browser.get(f"http://127.0.0.1:{ui.port}/asset-groups")  # Lineage: the global asset graph
        _dismiss_welcome(browser)

        _button(browser, "Materialize all…").click()
        dialog = WebDriverWait(browser, 60).until(
            ec.visibility_of_element_located((By.XPATH, "//*[@role='dialog'][.//*[starts-with(normalize-space(.), 'Launch runs to materialize')]]"))
        )
        WebDriverWait(browser, 60).until(lambda _: "Partition selection" in dialog.text and "Launch backfill" in dialog.text)
        browser.save_screenshot(str(tmp_path / "materialize_all_dialog.png"))
        assert "0 partitions" in dialog.text  # Dagster's dialog starts with nothing selected for dynamic partitions

        _button(browser, "All").click()
        WebDriverWait(browser, 30).until(lambda _: f"{len(keys)} partitions" in dialog.text)
        browser.save_screenshot(str(tmp_path / "materialize_all_every_batch.png"))
        _button(browser, "Launch backfill").click()
        toast = WebDriverWait(browser, 60).until(
            ec.visibility_of_element_located((By.XPATH, "//*[starts-with(normalize-space(.), 'Created backfill')]"))
        )
        backfill_id = re.match(r"Created backfill (\w+)", toast.text).group(1)

        def loading_run():
            backfill = ui.gql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
            return next((r for r in backfill["runs"] if {"path": ["raw_judgments"]} in (r["assetSelection"] or [])), None)

        run = wait_for(loading_run, 240, "the backfill's run of raw_judgments")
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert {tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]} == set(keys)
        assert sorted(ui.gql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]["partitionNames"]) == sorted(keys)

        browser.get(f"http://127.0.0.1:{ui.port}/runs/b/{backfill_id}")
        WebDriverWait(browser, 60).until(lambda d: backfill_id in d.find_element(By.TAG_NAME, "body").text)
        time.sleep(2)  # let the page settle for the picture
        browser.save_screenshot(str(tmp_path / "backfill.png"))
    finally:
        ui.stop()
