"""The charts page and the API docs in a real headless Chromium (Debian's
chromium and chromium-driver, driven by Selenium), against the real stack.

Screenshots go to AIMUSICSTORE_SCREENSHOT_DIR (default build/screenshots);
the terminal summary prints the folder. Without chromium these tests fail
under CI=true (scripts/system-packages.sh installs it) and are skipped,
saying why, elsewhere.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from services.ranking.rankings import Rankings
from tests.integration.conftest import auth, eventually, vote
from tests.integration.test_ranking import Days, events_on, new_agent

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("AIMUSICSTORE_SCREENSHOT_DIR") or ROOT / "build" / "screenshots")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
DESKTOP = (1366, 900)
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}

TITLES = {
    "A": ("Neon Rain", "Model X"),
    "B": ("Glass Horizon", "Aurora-3"),
    "C": ("Midnight Circuit", "Synthia"),
    "D": ("Paper Moons", "Model X"),
    "E": ("Velvet Static", "Lumen"),
    "F": ("Orbit Lullaby", "Aurora-3"),
}
PLATFORMS = ["suno_ai", "udio", "musiclm"]


def seed_charts(api: httpx.Client, stack: Stack, genre: str) -> dict[str, str]:
    """Six songs in their own genre with three days of history (written to the
    ranking store with an injected clock, as test_ranking does) and votes
    today through the API. By design: today's daily chart (F, C, D) differs
    from the weekly one (led by A), and on the weekly chart `best` (E: all
    up) differs from `score` (A: many up, many down)."""
    submitter = new_agent(api)
    songs: dict[str, str] = {}
    for n, (name, (title, artist)) in enumerate(TITLES.items()):
        song_id = f"{genre}-{name.lower()}"
        body = {
            "id": song_id,
            "title": title,
            "artist": artist,
            "platform": PLATFORMS[n % 3],
            "genre": genre,
            "tempo": 90 + 8 * n,
        }
        reply = api.post("/api/v1/songs", json=body, headers=auth(submitter["key"]))
        assert reply.status_code == 200, reply.text
        songs[name] = song_id
    today = datetime.now(UTC).date()
    # Only the last three days: test_ranking builds its own history on the
    # days before, and a day frozen here would be frozen before its events.
    plan = {
        3: [("A", 14, 8), ("E", 3, 0), ("C", 4, 0), ("B", 2, 0)],
        2: [("A", 13, 8), ("E", 7, 0), ("B", 3, 1), ("D", 2, 0)],
        1: [("A", 13, 8), ("E", 4, 0), ("F", 1, 0)],
    }

    async def build(rankings: Rankings) -> None:
        for days_ago, votes in plan.items():
            day = today - timedelta(days=days_ago)
            batch = [e for name, up, down in votes for e in events_on(day, songs[name], up, down)]
            await rankings.scale.apply_vote_events(batch)
        await rankings.snapshots.snapshot_finished_days()

    Days(stack, datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=1)).run(build)
    voters = [new_agent(api) for _ in range(4)]
    for voter in voters[:3]:
        assert vote(api, voter["key"], songs["F"], comment="Dreamy and tight.").status_code == 200
    assert vote(api, voters[3]["key"], songs["C"], "up", comment="That bassline!").status_code == 200
    assert vote(api, voters[0]["key"], songs["D"], "up").status_code == 200
    tool = api.post(
        "/api/v1/tools",
        json={"id": f"{genre}-studio", "name": "Stem Studio", "category": "stems", "website": "https://example.com"},
        headers=auth(stack.admin_key),
    )
    assert tool.status_code == 200, tool.text
    assert (
        vote(api, voters[1]["key"], tool.json()["id"], item_type="tool", rating=5, comment="Clean stems").status_code
        == 200
    )
    eventually(lambda: len(api.get("/api/v1/top/daily", params={"genre": genre}).json()["entries"]) == 3, 3.0)
    return songs


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        reason = "chromium and chromium-driver are not installed (scripts/system-packages.sh installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ": the browser tests cannot be skipped in CI")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--lang=en-US"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def seeded(api: httpx.Client, stack: Stack) -> dict[str, Any]:
    genre = f"g{uuid.uuid4().hex[:8]}"
    return {"genre": genre, "songs": seed_charts(api, stack, genre)}


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def shot(driver: Any, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def chart_rows(driver: Any) -> list[str]:
    """The chart's items in order, read at once (the page re-renders it as votes arrive)."""
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('#chart-body tr[data-key]')].map((r) => r.dataset.key);"
        )
    )


def wait(driver: Any, condition: Any, timeout_s: float = 5.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(condition)


def test_the_page_loads_seeded_charts_without_console_errors(
    browser: Any, stack: Stack, seeded: dict[str, Any]
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.gateway_url}/?genre={seeded['genre']}")
    songs = seeded["songs"]
    wait(browser, lambda d: len(chart_rows(d)) == 3)
    assert chart_rows(browser) == [f"song:{songs[n]}" for n in "FCD"]
    trending = browser.find_element(By.ID, "trending-list").text
    assert "Orbit Lullaby" in trending and "Midnight Circuit" in trending
    caption = browser.find_element(By.ID, "chart-caption").text
    assert caption.startswith("Daily chart of songs, by score")
    # Movement: every song on today's chart was absent yesterday but F.
    badges = browser.execute_script(
        "return [...document.querySelectorAll('#chart-body tr td:nth-child(2)')].map((c) => c.innerText.trim());"
    )
    assert badges[1:] == ["NEW", "NEW"] and badges[0] != ""
    wait(browser, lambda d: d.find_element(By.ID, "live-status").get_attribute("data-state") == "live")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#leaderboard-list li"))
    shot(browser, "charts-desktop")
    assert console_errors(browser) == []


def test_switching_to_weekly_and_to_best_changes_the_chart(browser: Any, stack: Stack, seeded: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    songs = seeded["songs"]
    browser.get(f"{stack.gateway_url}/?genre={seeded['genre']}")
    wait(browser, lambda d: len(chart_rows(d)) == 3)
    daily = chart_rows(browser)
    browser.find_element(By.CSS_SELECTOR, "label[for=p-weekly]").click()
    wait(browser, lambda d: d.find_element(By.ID, "chart-table").get_attribute("data-period") == "weekly")
    weekly = chart_rows(browser)
    assert weekly != daily and weekly[0] == f"song:{songs['A']}"
    assert "period=weekly" in browser.current_url
    browser.find_element(By.CSS_SELECTOR, "label[for=s-best]").click()
    wait(browser, lambda d: d.find_element(By.ID, "chart-table").get_attribute("data-sort") == "best")
    best = chart_rows(browser)
    assert best != weekly and best[0] == f"song:{songs['E']}"
    assert browser.find_element(By.ID, "chart-caption").text.startswith("Weekly chart of songs, best rated")
    # The keyboard reaches the same controls: arrow keys move within the radio group.
    from selenium.webdriver.common.keys import Keys

    browser.find_element(By.ID, "s-best").send_keys(Keys.ARROW_RIGHT)
    wait(browser, lambda d: d.find_element(By.ID, "chart-table").get_attribute("data-sort") == "controversial")
    shot(browser, "charts-weekly-controversial")
    assert console_errors(browser) == []


def test_a_vote_cast_through_the_api_appears_in_the_ticker_within_2_s(
    browser: Any, api: httpx.Client, stack: Stack, seeded: dict[str, Any]
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.gateway_url}/?genre={seeded['genre']}")
    wait(browser, lambda d: d.find_element(By.ID, "live-status").get_attribute("data-state") == "live")
    target = seeded["songs"]["B"]
    voter = new_agent(api)
    assert vote(api, voter["key"], target, "up").status_code == 200
    item = wait(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'#ticker li[data-item-id="{target}"]'), timeout_s=2.0
    )[0]
    assert "Glass Horizon" in item.text and voter["id"] in item.text
    # The charts follow: B joins today's chart without a reload.
    wait(browser, lambda d: f"song:{target}" in chart_rows(d), timeout_s=5.0)
    shot(browser, "ticker-after-vote")
    assert console_errors(browser) == []


def test_an_items_history_plot_and_reviews_render(browser: Any, stack: Stack, seeded: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.gateway_url}/?genre={seeded['genre']}&period=weekly")
    wait(browser, lambda d: d.find_element(By.ID, "chart-table").get_attribute("data-period") == "weekly")
    wait(browser, lambda d: chart_rows(d) and chart_rows(d)[0] == f"song:{seeded['songs']['A']}")
    browser.find_element(By.CSS_SELECTOR, "#chart-body tr:first-child .item-link").click()
    dialog = browser.find_element(By.ID, "item")
    wait(browser, lambda d: dialog.find_elements(By.CSS_SELECTOR, "#item-history svg circle"))
    points = dialog.find_elements(By.CSS_SELECTOR, "#item-history svg circle")
    assert len(points) == 3  # A was on the daily chart on each of the three past days
    assert dialog.find_element(By.CSS_SELECTOR, "#item-history svg path").get_attribute("d").startswith("M")
    assert "Neon Rain" in dialog.find_element(By.ID, "item-title").text
    assert "best #1" in dialog.find_element(By.CSS_SELECTOR, "#item-history figcaption").text
    shot(browser, "item-history")
    # Esc closes it, as any dialog.
    from selenium.webdriver.common.keys import Keys

    dialog.send_keys(Keys.ESCAPE)
    wait(browser, lambda d: not d.find_element(By.ID, "item").get_attribute("open"))
    # A song with a review shows it.
    browser.get(f"{stack.gateway_url}/?genre={seeded['genre']}")
    wait(browser, lambda d: len(chart_rows(d)) >= 3)
    browser.find_element(By.CSS_SELECTOR, f'#chart-body tr[data-key="song:{seeded["songs"]["C"]}"] .item-link').click()
    wait(browser, lambda d: "That bassline!" in d.find_element(By.ID, "item-reviews").text)
    assert console_errors(browser) == []


def test_the_page_fits_a_phone(browser: Any, stack: Stack, seeded: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        browser.get(f"{stack.gateway_url}/?genre={seeded['genre']}")
        wait(browser, lambda d: len(chart_rows(d)) >= 3)
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#trending-list li"))
        # Nothing wider than the screen: no sideways scrolling.
        wide = browser.execute_script(
            "return [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > "
            "innerWidth + 0.5).map((e) => `${e.tagName}#${e.id}.${e.className}`).slice(0, 10);"
        )
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE["width"], wide
        shot(browser, "charts-phone")
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE | {"height": 3000})
        shot(browser, "charts-phone-full")
        assert console_errors(browser) == []
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_docs_execute_a_call(browser: Any, stack: Stack, seeded: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{stack.gateway_url}/docs")
    op_id = "operations-RankingService-RankingService_GetTrending"

    def execute_button(d: Any) -> Any:
        """Expands the operation (again, if a re-render folded it) until its Execute button shows."""
        found = d.find_elements(By.CSS_SELECTOR, f"#{op_id} button.execute")
        if not found:
            summary = d.find_elements(By.CSS_SELECTOR, f"#{op_id} .opblock-summary-control")
            if summary and summary[0].get_attribute("aria-expanded") != "true":
                summary[0].click()
        return found

    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".information-container .title"), 10.0)
    wait(browser, execute_button, 10.0)[0].click()
    op = browser.find_element(By.ID, op_id)
    status = wait(
        browser, lambda d: op.find_elements(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status")
    )
    assert status[0].text.strip().startswith("200")
    assert '"songs"' in op.find_element(By.CSS_SELECTOR, ".live-responses-table .microlight").text
    # Operations that need a key carry the lock; reads do not.
    locks = {
        o.get_attribute("id"): bool(o.find_elements(By.CSS_SELECTOR, ".authorization__btn"))
        for o in browser.find_elements(By.CSS_SELECTOR, ".opblock")
    }
    assert locks["operations-VoteService-VoteService_CastVote"] is True
    assert locks["operations-RankingService-RankingService_GetTrending"] is False
    shot(browser, "docs")
    assert console_errors(browser) == []
