"""The browser playground in real Chromium (Playwright) against the real server process: upload,
submit, queue position and progress from the event stream, cancel, results, a 400 beside its
field. The API node has no worker until the test starts one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from e2e.test_server_process import create_key, environment, free_port, process, wait_until

pytestmark = pytest.mark.slow
HOUSE = Path(__file__).parents[2] / "examples" / "house.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run scripts/setup (it installs /usr/bin/chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def submit_house(page: Page, prompt: str) -> str:
    page.set_input_files("#images", str(HOUSE))
    expect(page.locator("#thumbs img[data-uploaded=yes]")).to_have_count(1)
    page.fill("#prompt", prompt)
    before = page.locator(".task").count()
    page.click("#submit")
    expect(page.locator(".task")).to_have_count(before + 1)
    task_id = page.locator(".task").first.get_attribute("data-task-id")
    assert task_id is not None
    page.click("#thumbs button")  # the next task picks its own image
    return task_id


def test_playground_in_chromium(browser: Browser, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = environment(tmp_path / "data", QWENEDIT_ENGINE="tiny", QWENEDIT_PUBLIC_URL=base)
    env["QWENEDIT_STEPS"] = "150"  # slow enough for the page to see progress between 0 and 100
    with ExitStack() as stack:
        stack.enter_context(
            process(["serve", "--no-worker", "--port", str(port)], env, tmp_path / "api.log")
        )
        wait_until(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, "healthz")
        key = create_key(env, credits=10)
        page = browser.new_page(viewport={"width": 390, "height": 844})  # phone-sized
        page.goto(base + "/")
        page.fill("#api-key", key)
        page.press("#api-key", "Enter")  # keyboard: the key form submits
        expect(page.locator("#balance")).to_have_text("balance: 10 credits")

        first = submit_house(page, "add a red hat")
        second = submit_house(page, "make it night")
        page.fill("#n", "9")
        page.set_input_files("#images", str(HOUSE))
        expect(page.locator("#thumbs img[data-uploaded=yes]")).to_have_count(1)
        page.click("#submit")
        expect(page.locator("#error-n")).to_contain_text("n")
        assert page.evaluate("document.activeElement.id") == "n"
        page.fill("#n", "1")

        cards = {task: page.locator(f'.task[data-task-id="{task}"]') for task in (first, second)}
        expect(cards[second]).to_have_attribute("data-queue-position", "1")
        expect(cards[second].locator(".detail")).to_contain_text("queue position 1")
        cards[first].locator(".cancel").click()
        expect(cards[first]).to_have_attribute("data-status", "failed")
        expect(cards[first].locator(".field-error")).to_contain_text("request_cancelled")
        expect(cards[second]).to_have_attribute("data-queue-position", "0")

        stack.enter_context(process(["worker"], env, tmp_path / "worker.log"))
        expect(cards[second]).to_have_attribute("data-status", "completed", timeout=120_000)
        log = [int(v) for v in (cards[second].get_attribute("data-progress-log") or "").split()]
        assert log[0] == 0 and log[-1] == 100 and log == sorted(log)
        assert len(set(log)) >= 3, log  # progress moved through the steps
        result = cards[second].locator(".gallery img")
        expect(result).to_have_count(1)
        result.scroll_into_view_if_needed()
        loaded = "img => img.complete && img.naturalWidth"
        wait_until(lambda: result.evaluate(loaded) > 0, 30, "the result image")
        link = cards[second].locator(".gallery a")
        assert link.get_attribute("download") == f"{second}-0.png"
        expect(page.locator("#balance")).to_have_text("balance: 9 credits")
        page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)

        page.reload()  # the tasks of this browser come back
        expect(page.locator(".task")).to_have_count(2)
        expect(page.locator(f'.task[data-task-id="{second}"] .gallery img')).to_have_count(1)
    assert (tmp_path / "playground.png").stat().st_size > 0
