"""The web chat end to end in headless Chromium: upload an image, ask, watch the answer
stream in, and check it is the API's answer to the same request (one engine, one
template). A screenshot is kept in tests/artifacts/ (gitignored).

Needs Debian's chromium at /usr/bin/chromium, which `make test` installs with
scripts/install-browser.sh; without it the test skips and says so. Playwright drives
that system browser: `playwright install` is never run."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
import pytest

from .conftest import data_url, image_part, start_server

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
QUESTION = "What colour is the cube?"
MAX_TOKENS = 24

# Records every text the last answer bubble shows, to see the answer grow.
WATCH_ANSWERS = """() => {
    window.__answers = [];
    const record = () => {
        const bots = document.querySelectorAll('#ocelli-chat [data-testid="bot"]');
        const text = bots.length ? bots[bots.length - 1].innerText : "";
        if (text && text !== window.__answers[window.__answers.length - 1]) {
            window.__answers.push(text);
        }
    };
    new MutationObserver(record).observe(document.body, {
        childList: true, subtree: true, characterData: true,
    });
}"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: run scripts/install-browser.sh (make test does) "
            "to install Debian's chromium"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'"
    )
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-background-networking"],
            headless=True,
        )
        yield chromium
        chromium.close()


def test_upload_ask_and_see_the_answer_stream(browser, pipeline, one_thread, image_paths):
    started = time.monotonic()
    with start_server(pipeline, api_keys=(), ui_path="/ui", max_tokens_limit=MAX_TOKENS) as live:
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        failed = []  # the page's own requests that failed, such as image URLs outside /ui
        page.on(
            "response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None
        )
        page.goto(live.url + "/", wait_until="domcontentloaded")  # redirects to /ui/
        page.wait_for_selector("#ocelli-input textarea", timeout=30_000)
        page.evaluate(WATCH_ANSWERS)

        page.set_input_files("#ocelli-input input[type=file]", str(image_paths[0]))
        page.wait_for_selector("#ocelli-input img", timeout=15_000)  # the upload's preview
        page.fill("#ocelli-input textarea", QUESTION)
        page.keyboard.press("Enter")

        user = page.locator('#ocelli-chat [data-testid="user"]')
        user.filter(has_text=QUESTION).wait_for(timeout=15_000)
        # the image part of the message may render a moment after its text
        user.locator("img").first.wait_for(timeout=15_000)
        assert user.locator("img").count() == 1, "the uploaded image is not in the chat"
        # The answer is done when the input is usable again.
        page.wait_for_function(
            "() => { const b = document.querySelector('#ocelli-input textarea');"
            " return window.__answers.length > 0 && b && !b.disabled; }",
            timeout=30_000,
        )
        answers = page.evaluate("window.__answers")
        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "ui_chat.png"
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")

        api = httpx2.post(
            live.url + "/v1/chat/completions",
            json={
                "model": "default",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            image_part(data_url(image_paths[0].read_bytes())),
                            {"type": "text", "text": QUESTION},
                        ],
                    }
                ],
                "max_tokens": MAX_TOKENS,
                "temperature": 0,
            },
            timeout=60,
        ).json()["choices"][0]["message"]["content"]
        page.close()

    final = answers[-1]
    assert not [f for f in failed if "/gradio_api/" in f], failed
    assert len(answers) >= 2, f"the answer did not stream; the page showed only {answers}"
    assert all(final.startswith(shown.strip()) for shown in answers[:-1]), answers
    assert "".join(final.split()) == "".join(api.split()), "the page and the API disagree"
    assert time.monotonic() - started < 60
