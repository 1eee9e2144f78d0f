"""The web view in a real browser (Debian's Chromium through Playwright) on the session worker.

Traffic for a few unique restaurants is produced once per module; the tests then wait for
their windows to close and look at the pages as a person would. Screenshots go to
``artifacts/screenshots/`` for a human to check the look.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest

from streams.dev.stack import Process
from tests.records import review_created
from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
XSS_TEXT = ('Terrible, found a cockroach, food poisoning, disgusting! '
            '<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=2">')
REVIEWS_PER_WINDOW = 5


@pytest.fixture(scope="module")
def traffic(worker: Process, producer: Any) -> dict[str, str]:
    """Three restaurants over two windows: a happy one, an unhappy one, one with hostile markup."""
    run = uuid.uuid4().hex[:6]
    names = {
        "happy": f"web-happy-{run}",
        "unhappy": f"web-unhappy-{run}",
        "hostile": f'web-<img src=x onerror="window.__pwned=3">-{run}',
    }
    window_ms = httpx.get(f"{worker.url}/api/restaurants", timeout=5).json()["window_size_s"] * 1000

    def review(restaurant: str, rating: int, text: str, occurred_ms: int) -> dict[str, Any]:
        return review_created(f"web-{uuid.uuid4().hex}", restaurant_id=restaurant, rating=rating, text=text,
                              occurred_at=occurred_ms, language="en")

    for batch in range(2):  # two consecutive windows: two chart points
        now = int(time.time() * 1000)
        for i in range(REVIEWS_PER_WINDOW):  # >= alert_negative_min_reviews (5)
            # One text for every happy review: the second window's are answered from the cache.
            producer.send_review(review(names["happy"], 5, f"Amazing food, arrived hot {run}", now))
            producer.send_review(review(names["unhappy"], 1, f"Cold and late, terrible {i} {run}", now))
        if batch == 0:
            producer.send_review(review(names["hostile"], 1, XSS_TEXT, now))
            # Wait for the next window by the clock (a boundary, not luck): events dated in a
            # window that already closed would be counted as late instead.
            time.sleep((window_ms - now % window_ms) / 1000 + 0.1)
    return names


@pytest.fixture(scope="module")
def listed(worker: Process, traffic: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The dashboard API rows of the three restaurants, once all have a closed window."""
    def rows() -> dict[str, dict[str, Any]]:
        body = httpx.get(f"{worker.url}/api/restaurants", timeout=5).json()
        return {r["restaurant_id"]: r for r in body["restaurants"] if r["restaurant_id"] in traffic.values()}

    return until(rows, timeout_s=40, what="the three restaurants on the dashboard",
                 done=lambda found: len(found) == 3, interval_s=0.5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_dashboard_lists_restaurants_from_traffic_worst_first(
        page: Any, worker: Process, traffic: dict[str, str], listed: dict[str, dict[str, Any]]) -> None:
    unhappy, happy = listed[traffic["unhappy"]], listed[traffic["happy"]]
    assert unhappy["severity"] == "CRITICAL" and unhappy["negative_share"] == 1.0
    assert happy["severity"] == "OK" and happy["sentiment_avg"] > 0

    page.goto(f"{worker.url}/")
    rows = page.locator("#restaurants tbody tr[data-restaurant]")
    for name in traffic.values():
        rows.filter(has_text=name).first.wait_for()
    order = rows.evaluate_all("rows => rows.map(r => r.dataset.restaurant)")
    assert order.index(traffic["unhappy"]) < order.index(traffic["happy"])  # worst first
    row = page.locator(f'tr[data-restaurant="{traffic["unhappy"]}"]')
    assert "CRITICAL" in row.inner_text() and "100%" in row.inner_text()
    assert "/min" in row.inner_text() and "$" in row.inner_text() and "negative_share" in row.inner_text()
    # Costs are fractions of a cent: the cells show them to the micro-dollar, not "$0".
    for cell, micro in (("td.cost.window", unhappy["cost_micro_usd"]), ("td.cost.today", None)):
        text = row.locator(cell).inner_text().splitlines()[0]  # a cache share may follow
        assert text != "$0" and text.startswith("$"), (cell, text)
        if micro is not None and 0 < micro < 10_000:
            assert round(float(text[1:]) * 1e6) == micro, (cell, text, micro)
    # Each alert says which window it judged: the unhappy row's is about its latest window.
    chip = row.locator('.chip[data-rule="negative_share"]')
    assert chip.get_attribute("data-current") == "true" and "window " in chip.get_attribute("title")
    screenshot(page, "dashboard")


def test_dashboard_says_a_window_answered_from_the_cache_is_cached_not_free(
        page: Any, worker: Process, traffic: dict[str, str], listed: dict[str, dict[str, Any]]) -> None:
    """Issue 33.4: "$0" where the result cache answered read as broken; the share says why."""
    happy = traffic["happy"]

    def happy_row() -> dict[str, Any]:
        rows = httpx.get(f"{worker.url}/api/restaurants", timeout=5).json()["restaurants"]
        return next(r for r in rows if r["restaurant_id"] == happy)

    row = until(happy_row, timeout_s=40, what="the happy second window, answered from the cache",
                done=lambda r: r["cache_hits"] == REVIEWS_PER_WINDOW, interval_s=0.5)
    assert row["llm_calls"] == 0 and row["cost_micro_usd"] == 0
    page.goto(f"{worker.url}/")
    cell = page.locator(f'tr[data-restaurant="{happy}"] td.cost.window')
    cell.locator("small.cached").wait_for()
    assert cell.inner_text().splitlines() == ["$0", "100% cached"]


# (micro-dollars, what a person reads): exact below a cent, 4 decimals to a dollar, then cents.
USD_CELLS = [(None, "—"), (0, "$0"), (1, "$0.000001"), (54, "$0.000054"), (9_999, "$0.009999"),
             (12_345, "$0.0123"), (999_999, "$1.0000"), (1_000_000, "$1.00"), (1_234_560_000, "$1,234.56")]


def test_cost_format_keeps_fractions_of_a_cent_readable(page: Any, worker: Process) -> None:
    page.goto(f"{worker.url}/")
    shown = page.evaluate("cells => cells.map(m => RP.fmt.usd(m))", [m for m, _ in USD_CELLS])
    assert shown == [text for _, text in USD_CELLS]


def test_hostile_restaurant_id_is_shown_as_text_and_runs_nothing(
        page: Any, worker: Process, traffic: dict[str, str], listed: dict[str, dict[str, Any]]) -> None:
    hostile = traffic["hostile"]
    page.goto(f"{worker.url}/")
    page.get_by_text(hostile, exact=True).first.wait_for()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("#restaurants img").count() == 0

    page.goto(f"{worker.url}/restaurants/{quote(hostile, safe='')}")
    page.locator("#name").filter(has_text=hostile).wait_for()
    page.locator("#tiles .tile").first.wait_for()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("main img, main script").count() == 0


def test_critical_review_with_markup_is_shown_as_text_and_runs_nothing(
        page: Any, worker: Process, traffic: dict[str, str], listed: dict[str, dict[str, Any]]) -> None:
    page.goto(f"{worker.url}/restaurants/{quote(traffic['hostile'], safe='')}")
    text = page.locator("#critical .review-text")
    text.first.wait_for(timeout=10_000)
    assert "<script>window.__pwned=1</script>" in text.first.inner_text()
    assert '<img src=x onerror="window.__pwned=2">' in text.first.inner_text()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("main img, main script").count() == 0
    screenshot(page, "restaurant-critical-review")


def test_restaurant_page_draws_window_history_chart(
        page: Any, worker: Process, traffic: dict[str, str], listed: dict[str, dict[str, Any]]) -> None:
    name = traffic["unhappy"]
    windows = httpx.get(f"{worker.url}/api/restaurants/{quote(name, safe='')}/windows", timeout=5).json()
    assert windows["windows"] and all(w["reviews"] == REVIEWS_PER_WINDOW for w in windows["windows"])
    page.goto(f"{worker.url}/restaurants/{quote(name, safe='')}")
    points = page.locator("#chart svg circle.point")
    points.first.wait_for()
    assert points.count() == len(windows["windows"])
    assert page.locator("#chart svg rect.barr").count() == len(windows["windows"])
    assert float(points.first.get_attribute("data-sentiment")) < 0
    assert page.locator("#severity .pill").inner_text() == "CRITICAL"
    assert "negative_share" in page.locator("#alerts").inner_text()
    screenshot(page, "restaurant")


def test_range_picker_charts_the_closed_windows_read_back_from_the_topic(
        page: Any, worker: Process, traffic: dict[str, str], listed: dict[str, dict[str, Any]]) -> None:
    """Issue 33.3: "Last hour" charts the restaurant's closed windows from restaurants.aggregates
    (the API's history answer), "Live" goes back to the owner's windows."""
    name = traffic["unhappy"]
    api = f"{worker.url}/api/restaurants/{quote(name, safe='')}/windows"

    def read_back() -> list[dict[str, Any]]:
        now = int(time.time() * 1000)
        return httpx.get(api, params={"from": now - 3_600_000, "to": now}, timeout=30).json()["windows"]

    closed = until(read_back, timeout_s=30, what="the module's two windows closed and on the topic",
                   done=lambda windows: len(windows) == 2)
    assert all(w["reviews"] == REVIEWS_PER_WINDOW for w in closed)
    page.goto(f"{worker.url}/restaurants/{quote(name, safe='')}")
    page.locator('#chart[data-source="live"] svg').wait_for()
    page.get_by_role("button", name="Last hour").click()
    page.locator('#chart[data-source="history"] svg').wait_for()
    assert page.locator("#chart").get_attribute("data-windows") == str(len(closed))
    points = page.locator("#chart svg circle.point")
    assert points.count() == len(closed)
    assert [int(p) for p in points.evaluate_all("ps => ps.map(p => p.dataset.windowStart)")] == [
        w["window_start"] for w in closed]
    assert "closed windows from restaurants.aggregates" in page.locator("#range-note").inner_text()
    assert page.get_by_role("button", name="Last hour").get_attribute("aria-pressed") == "true"
    screenshot(page, "restaurant-history-range")
    page.get_by_role("button", name="Live").click()
    page.locator('#chart[data-source="live"]').wait_for()


def test_a_critical_reviews_link_opens_its_page_with_its_timeline_and_its_final_state(
        page: Any, worker: Process, traffic: dict[str, str], listed: dict[str, dict[str, Any]]) -> None:
    """Issue 33.1, "follow one review": from the restaurant's critical reviews to the review's
    page (a hostile restaurant id in the links and the page's text), its records on every
    topic in time order, and the state its owner holds."""
    hostile = traffic["hostile"]
    page.goto(f"{worker.url}/restaurants/{quote(hostile, safe='')}")
    item = page.locator("#critical li[data-review]").first
    item.wait_for(timeout=10_000)
    review_id = item.get_attribute("data-review")
    item.locator("a.follow").click()
    page.wait_for_url(lambda url: "/reviews/" in url)
    assert [unquote(part) for part in urlsplit(page.url).path.split("/")[1:]] == [
        "restaurants", hostile, "reviews", review_id]
    assert page.locator("#name").inner_text() == review_id
    assert page.locator("#back").inner_text() == f"← {hostile}"
    rows = page.locator("#timeline tbody tr[data-topic]")
    page.locator('#timeline tr[data-topic="reviews.enriched"]').wait_for(timeout=30_000)
    topics = rows.evaluate_all("rows => rows.map(r => r.dataset.topic)")
    assert topics.index("reviews.created") < topics.index("reviews.enriched"), topics
    assert "reviews.critical_alert" in topics, topics
    enriched = page.locator('#timeline tr[data-topic="reviews.enriched"]').first.inner_text()
    assert "enriched " in enriched and "status: " in enriched  # what the step says, and its details
    assert "records from" in page.locator("#timeline-note").inner_text()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("main img, main script").count() == 0
    screenshot(page, "review")
    page.get_by_role("link", name=f"← {hostile}").click()
    page.locator("#critical li[data-review]").first.wait_for()
    page.go_back()
    # The state from the owner (the state API): a final one, since the review was answered.
    state = page.locator('#state .pill[data-final="true"]')
    state.wait_for(timeout=15_000)
    assert state.inner_text() in ("ENRICHED", "FALLBACK")
    assert page.locator("#history li[data-state]").count() >= 2  # PENDING … its final state
    screenshot(page, "review-final")


def test_a_review_nobody_knows_reads_not_known_yet_and_no_record_in_its_timeline(
        page: Any, worker: Process, traffic: dict[str, str]) -> None:
    """The state API answers 404 for a review its owner has no state of (not yet, or never):
    the page says so and keeps asking for a while; the timeline says it found no record."""
    restaurant = quote(traffic["happy"], safe="")
    page.goto(f"{worker.url}/restaurants/{restaurant}/reviews/rv-nobody-{uuid.uuid4().hex}")
    page.locator('#state .pill[data-state="UNKNOWN"]').wait_for()
    assert page.locator("#state").inner_text() == "not known (yet)"
    assert "asking again every 2 s" in page.locator("#subtitle").inner_text()
    page.locator('#timeline[data-steps="0"]').wait_for(timeout=30_000)
    assert "no record of review" in page.locator("#timeline tbody").inner_text()


def test_pages_and_api_answer_without_a_token_when_none_is_set(worker: Process) -> None:
    """The session worker runs without a token (the routing tests set one)."""
    for path in ("/", "/api/restaurants", "/static/style.css", "/health", "/ready", "/metrics"):
        assert httpx.get(f"{worker.url}{path}", timeout=5).status_code == 200, path
