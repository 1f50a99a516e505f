"""The chat page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright) against the real server.

Asks a question, follows up, clicks a citation chip and checks that the cited sentence is highlighted and
scrolled into view in the source document; checks that document text is rendered as text, never as HTML.
Skipped only when Chromium is not installed (`apt-get install -y chromium`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

try:
    from tests.test_server import SEEDS, running_server
except ImportError:  # tests/ without __init__.py
    from test_server import SEEDS, running_server

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = [pytest.mark.model,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)")]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# A document whose text looks like HTML: the page must show it literally and run none of it.
HOSTILE = (
    "Hostile markup report\n\n"
    "The Zanzibar clove board wrote <b>bold</b> and <script>window.__pwned = 1</script> in its notice. "
    "The same notice carried <img src=x onerror=\"window.__pwned = 2\"> as an image tag.\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    corpus = tmp / "corpus"
    shutil.copytree(SEEDS, corpus)
    (corpus / "900_hostile.txt").write_text(HOSTILE, encoding="utf-8")
    with running_server(tmp, "--no-access-log", corpus=corpus) as s:
        yield s


@pytest.fixture()
def page(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # A new, empty profile for every test (launch_persistent_context owns --user-data-dir).
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 800})
        # Only the server under test is reachable: anything else is a bug in the page (it must use no CDN).
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url)
                      else route.abort())
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
        page.goto(server.url + "/")
        page.wait_for_selector(".status.ok", timeout=30_000)
        yield page
        context.close()
        assert errors == []


def ask(page, question: str) -> object:
    count = page.locator(".answer:not(.pending)").count()
    page.fill("#question", question)
    page.press("#question", "Enter")
    page.locator(".answer:not(.pending)").nth(count).wait_for(timeout=30_000)
    return page.locator(".answer:not(.pending)").nth(count)


def test_citation_chip_opens_the_source_with_the_sentence_highlighted(page):
    from playwright.sync_api import expect

    answer = ask(page, "Why was the Torkham crossing closed?")
    first = answer.locator(".sentence").first
    text = first.locator(".text").text_content()
    chip = first.locator(".chip.primary")
    expect(chip).to_contain_text("004_efe84b1d27e376f8.txt · sentence")
    chip.click()

    cited = page.locator("#viewer-body mark.cited")
    expect(cited).to_have_count(1)
    expect(cited).to_have_text(text)
    expect(cited).to_be_in_viewport()
    assert cited.get_attribute("data-index") == chip.get_attribute("data-sentence-index")
    expect(page.locator("#viewer-title")).to_have_text("Will the Taliban crack down on TTP as per Islamabad’s request?")

    # A follow-up keeps the conversation and says how it was understood.
    follow = ask(page, "When did it reopen?")
    expect(follow.locator(".understood")).to_contain_text("Torkham")

    # "Not found" is shown as such.
    nothing = ask(page, "What is the capital of Mongolia?")
    expect(nothing.locator(".not-found-box")).to_contain_text("Not found in the corpus")
    expect(nothing.locator(".chip")).to_have_count(0)

    # A new conversation forgets the history: the same follow-up is no longer read with it.
    page.click("#new-conversation")
    expect(page.locator(".answer")).to_have_count(0)
    expect(page.locator("#viewer")).to_be_hidden()
    again = ask(page, "When did it reopen?")
    expect(again.locator(".understood")).to_have_count(0)


def test_document_text_is_rendered_as_text(page):
    from playwright.sync_api import expect

    answer = ask(page, "What did the Zanzibar clove board write in its notice?")
    chip = answer.locator('.chip[data-doc-id="900_hostile.txt"]').first
    chip.click()
    cited = page.locator("#viewer-body mark.cited")
    expect(cited).to_be_visible()
    body = page.locator("#viewer-body")
    expect(body).to_contain_text("<script>window.__pwned = 1</script>")
    expect(body).to_contain_text('<img src=x onerror="window.__pwned = 2">')
    assert body.locator("script, img, b").count() == 0
    assert page.evaluate("window.__pwned") is None
