"""The gateway's page in headless Chromium (Debian's ``chromium``, driven by Playwright): the
sample analysis question becomes Markdown, a table and a bar chart; a follow-up goes to the same
conversation; a reload mid-run resumes after the last event it had, with nothing shown twice;
cancel ends the run; a gateway that requires an API key takes one; the Markdown renderer turns
hostile text into nothing but text.

What the page shows is checked against the run's own stream, read apart over HTTP: the page
applied as many events as the run has, its text is as long as the run's tokens, it drew one step
per tool call, and it recomputed the terminal event's completeness proof from what it applied.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Request,
    async_playwright,
)

from agentstream.devstack.sse_client import SseMessage
from agentstream.devstack.stack import LocalStack
from gateway.auth import hash_api_key
from tests.e2e.runs import RUN_TIMEOUT_S, assert_complete, read_whole_run
from tests.stacks import extra_gateway

SAMPLE = "Tampilkan top 5 provinsi dengan rata-rata modal awal koperasi tertinggi"
FOLLOW_UP = "and the five lowest?"
WAIT_MS = RUN_TIMEOUT_S * 1000
# Where the screenshot of the sample question is copied for people to look at.
SCREENSHOT_COPY = Path("/tmp/page.png")
_CONVERSATION_STREAM = re.compile(r"/api/conversations/[A-Za-z0-9_-]+/stream\?")


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(path).exists(), "Debian's chromium is needed: apt-get install chromium (.ci/run)"
    return path


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium, Debian's: Playwright downloads no browser of its own."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=_chromium())
        try:
            yield launched
        finally:
            await launched.close()


class Tab:
    """One browser page, with the JavaScript errors it raised and the conversation streams it
    opened (their URLs)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.streams: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)
        page.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _request(self, request: Request) -> None:
        if _CONVERSATION_STREAM.search(request.url):
            self.streams.append(request.url)

    async def ask(self, question: str) -> str:
        """Ask ``question``; the run ID of its turn, once the page shows it."""
        turns = await self.page.locator(".turn").count()
        await self.page.fill("#message", question)
        await self.page.click("#send")
        turn = self.page.locator(".turn").nth(turns)
        await turn.wait_for(timeout=WAIT_MS)
        run = await turn.get_attribute("data-run")
        assert run is not None and run.startswith("run_")
        return run

    async def ended(self, run: str, status: str) -> None:
        await self.page.locator(f'.turn[data-run="{run}"][data-status="{status}"]').wait_for(
            timeout=WAIT_MS
        )


@pytest.fixture
async def tab(browser: Browser) -> AsyncIterator[Tab]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield Tab(await context.new_page())
    finally:
        await context.close()


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def assert_shows_run(page: Page, run: str, events: list[SseMessage]) -> None:
    """The page's turn of ``run`` shows each of the run's events once, as the run has them."""
    assert_complete(events)
    turn = page.locator(f'.turn[data-run="{run}"]')
    # The proof is recomputed with Web Crypto once the terminal event is applied.
    await page.locator(f'.turn[data-run="{run}"][data-proof="ok"]').wait_for(timeout=5_000)
    assert await turn.get_attribute("data-events") == str(len(events))
    tokens = "".join(m.json()["text"] for m in events if m.event == "token")
    chars = await turn.locator(".text").evaluate_all(
        "nodes => nodes.reduce((n, node) => n + Number(node.dataset.chars || 0), 0)"
    )
    assert chars == _utf16_length(tokens)
    tool_calls = [m for m in events if m.event == "tool_start"]
    assert await turn.locator(".step").count() == len(tool_calls)
    proof = events[-1].json()["completeness"]
    footer = await turn.locator(".reply-foot").inner_text()
    assert f"✓ all {proof['events']} events received" in footer


async def _sql_rows(page: Page, run: str) -> list[list[str]]:
    rows = page.locator(f'.turn[data-run="{run}"] .sql-table tbody tr')
    return [
        [cell.strip() for cell in await rows.nth(i).locator("td").all_inner_texts()]
        for i in range(await rows.count())
    ]


async def _ask_sample(tab: Tab, gateway: str, http: httpx.AsyncClient) -> str:
    await tab.page.goto(f"{gateway}/")
    run = await tab.ask(SAMPLE)
    await tab.ended(run, "done")
    await assert_shows_run(tab.page, run, await read_whole_run(http, gateway, run))
    return run


async def test_the_sample_question_becomes_markdown_a_table_and_a_chart(
    stack: LocalStack, http: httpx.AsyncClient, tab: Tab, tmp_path: Path
) -> None:
    gateway = stack.gateway_urls[0]
    run = await _ask_sample(tab, gateway, http)
    page = tab.page
    turn = page.locator(f'.turn[data-run="{run}"]')

    rows = await _sql_rows(page, run)
    assert len(rows) == 5
    headers = await turn.locator(".sql-table th").all_inner_texts()
    assert headers == ["provinsi", "nilai", "jumlah_koperasi"]
    # One bar per row, labelled by the first text column, longest first (ordered DESC).
    assert await turn.locator(".bar-chart rect.bar").count() == 5
    labels = await turn.locator(".bar-chart .bar-label").all_text_contents()
    assert labels == [row[0] for row in rows]
    widths = [
        float(await turn.locator(".bar-chart rect.bar").nth(i).get_attribute("width") or 0)
        for i in range(5)
    ]
    assert widths == sorted(widths, reverse=True) and widths[-1] > 0

    # The answer is Markdown: a numbered list of the same provinces and a SQL code block.
    answer = turn.locator(".text.markdown").last
    items = await answer.locator("ol > li").all_inner_texts()
    assert [item.split(" — ")[0] for item in items] == [row[0] for row in rows]
    code = await answer.locator("pre > code.language-sql").inner_text()
    assert code.startswith("SELECT provinsi") and "ORDER BY nilai DESC LIMIT 5" in code
    assert "```" not in await answer.inner_text()

    assert await turn.locator(".badge").inner_text() == "Done"
    assert "c=" in page.url
    await page.locator(f'#runs .run-item[data-run="{run}"][data-status="done"]').wait_for(
        timeout=5_000
    )

    # The whole page in one viewport: the composer, sticky at the bottom, covers nothing.
    height = await page.evaluate("document.documentElement.scrollHeight")
    await page.set_viewport_size({"width": 1280, "height": height})
    await page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "page.png"
    await page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    shutil.copyfile(shot, SCREENSHOT_COPY)
    assert tab.errors == []


async def test_a_follow_up_goes_to_the_same_conversation(
    stack: LocalStack, http: httpx.AsyncClient, tab: Tab, browser: Browser
) -> None:
    gateway = stack.gateway_urls[0]
    first = await _ask_sample(tab, gateway, http)
    page = tab.page
    conversation_url = page.url
    second = await tab.ask(FOLLOW_UP)
    await tab.ended(second, "done")
    await assert_shows_run(page, second, await read_whole_run(http, gateway, second))
    assert page.url == conversation_url

    # Answered from the first turn's context: the same measure and grouping, now lowest first.
    answer = await page.locator(f'.turn[data-run="{second}"] .text.markdown').last.inner_text()
    assert "provinces with the lowest average starting capital" in answer
    rows = await _sql_rows(page, second)
    assert len(rows) == 5 and not set(r[0] for r in rows) & {
        r[0] for r in await _sql_rows(page, first)
    }

    conversation = conversation_url.split("c=")[1].split("&")[0]
    view = (await http.get(f"{gateway}/api/conversations/{conversation}")).json()
    assert [t["run_id"] for t in view["turns"]] == [first, second]
    await page.locator("#runs .run-item").nth(1).wait_for(timeout=5_000)
    listed = await page.locator("#runs .run-item").evaluate_all(
        "items => items.map(item => item.dataset.run)"
    )
    assert listed == [second, first]

    # A reload redraws both turns from the events it kept and resumes after the last one; a new
    # tab (nothing kept) reads the conversation's stream from its start: both show the same.
    shown = await page.locator("#turns").inner_text()
    await page.reload()
    await page.locator(f'.turn[data-run="{second}"][data-proof="ok"]').wait_for(timeout=WAIT_MS)
    assert "last_event_id=" in tab.streams[-1]
    assert await page.locator("#turns").inner_text() == shown
    other = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        fresh = Tab(await other.new_page())
        await fresh.page.goto(conversation_url)
        await fresh.page.locator(f'.turn[data-run="{second}"][data-proof="ok"]').wait_for(
            timeout=WAIT_MS
        )
        assert "last_event_id=" not in fresh.streams[-1]
        assert await fresh.page.locator("#turns").inner_text() == shown
        assert fresh.errors == []
    finally:
        await other.close()
    assert tab.errors == []


@contextlib.asynccontextmanager
async def slow_question(
    stack: LocalStack, tab: Tab, prefix: str
) -> AsyncIterator[tuple[str, Locator]]:
    """The sample question asked on the page of a fresh org whose agent streams slowly (a run
    lasts seconds): its run and its turn on the page."""
    org = f"{prefix}{uuid.uuid4().hex[:8]}"
    async with stack.dedicated_agent(org, env={"SCRIPTED_TOKEN_DELAY_S": "0.08"}):
        await tab.page.goto(f"{stack.gateway_urls[0]}/?org={org}")
        run = await tab.ask(SAMPLE)
        yield run, tab.page.locator(f'.turn[data-run="{run}"]')


async def test_a_reload_mid_run_resumes_without_duplicates(
    stack: LocalStack, http: httpx.AsyncClient, tab: Tab
) -> None:
    gateway = stack.gateway_urls[0]
    async with slow_question(stack, tab, "pageslow") as (run, turn):
        page = tab.page
        # The table is drawn and the answer is streaming in when the page reloads.
        await turn.locator(".sql-result").wait_for(timeout=WAIT_MS)
        await turn.locator('.step[data-tool="run_sql"] ~ .text').wait_for(timeout=WAIT_MS)
        assert await turn.get_attribute("data-status") == "running"
        await page.reload()
        await tab.ended(run, "done")
        events = await read_whole_run(http, gateway, run)
    assert "last_event_id=" in tab.streams[-1]
    await assert_shows_run(page, run, events)
    assert await page.locator(".turn").count() == 1
    assert await turn.locator(".sql-result").count() == 1
    assert await turn.locator(".bar-chart rect.bar").count() == 5
    assert tab.errors == []


async def test_cancel_ends_the_run(stack: LocalStack, http: httpx.AsyncClient, tab: Tab) -> None:
    gateway = stack.gateway_urls[0]
    async with slow_question(stack, tab, "pagecancel") as (run, turn):
        page = tab.page
        await turn.locator(".step").first.wait_for(timeout=WAIT_MS)
        assert await page.locator("#send").is_disabled()
        await turn.locator("button.cancel").click()
        await tab.ended(run, "cancelled")
        events = await read_whole_run(http, gateway, run)
    assert events[-1].event == "cancelled"
    assert await turn.locator(".badge").inner_text() == "Cancelled"
    assert await turn.locator("button.cancel").is_hidden()
    await assert_shows_run(page, run, events)
    status = (await http.get(f"{gateway}/api/runs/{run}")).json()["status"]
    assert status == "cancelled"
    await page.locator(f'#runs .run-item[data-run="{run}"][data-status="cancelled"]').wait_for(
        timeout=5_000
    )
    # The conversation takes a new question once its run has ended.
    assert await page.locator("#send").is_enabled()
    assert tab.errors == []


async def test_a_gateway_that_requires_a_key_takes_one(
    stack: LocalStack, http: httpx.AsyncClient, tab: Tab
) -> None:
    key = "page-test-key-0123456789abcdef"
    keys = {"API_KEYS": f"default:{hash_api_key(key)}"}
    async with extra_gateway(stack, "gateway-page", keys) as gateway:
        page = tab.page
        await page.goto(f"{gateway}/")
        await page.locator("#key-panel.required").wait_for(timeout=5_000)
        await page.fill("#message", "Count my words please")
        await page.click("#send")
        notice = page.locator("#notice.error")
        await notice.wait_for(timeout=5_000)
        assert "API key" in await notice.inner_text()
        await page.fill("#key", key)
        await page.click("#key-form button")
        run = await tab.ask("Count my words please")
        await tab.ended(run, "done")
        answer = await page.locator(f'.turn[data-run="{run}"] .text.markdown').last.inner_text()
        assert "words: 4" in answer
        assert await page.locator("#key-panel.required").count() == 0
    # The refused first try logged its 401; nothing else went wrong.
    assert all("401" in error for error in tab.errors), tab.errors


HOSTILE = """# Title <img src=x onerror="window.pwned=1">

<script>window.pwned = 1</script> **bold <b>not bold</b>** and `<i>code</i>`

- [click](javascript:window.pwned=1) and [ok](https://example.com/a?b=1)
- ![img](https://example.com/x.png) <a href="javascript:alert(1)">a</a>

| a | b |
|---|--:|
| <svg onload=alert(1)> | 2 |

```html
<iframe src="javascript:alert(1)"></iframe>
```

See https://example.com/docs and [https://example.com/b](https://example.com/b).
"""
# Openers that never close: scanned once, not once per opener (a quadratic scan took seconds).
UNCLOSED = "_a " * 20_000 + "*b " * 20_000


async def test_markdown_is_rendered_as_text_never_as_html(stack: LocalStack, tab: Tab) -> None:
    page = tab.page
    await page.goto(f"{stack.gateway_urls[0]}/")
    found = await page.evaluate(
        """async (source) => {
            const { renderMarkdown } = await import("/static/markdown.js");
            const box = document.createElement("div");
            box.appendChild(renderMarkdown(source));
            document.body.appendChild(box);
            const tags = [...box.querySelectorAll("*")].map((node) => node.tagName.toLowerCase());
            const attributes = [...box.querySelectorAll("*")].flatMap((node) =>
                [...node.attributes].map((a) => a.name + "=" + a.value));
            return { tags: [...new Set(tags)].sort(), attributes, text: box.textContent,
                     pwned: window.pwned === 1, nestedLinks: box.querySelectorAll("a a").length };
        }""",
        HOSTILE,
    )
    assert not found["pwned"]
    assert set(found["tags"]) <= {
        "h1",
        "p",
        "strong",
        "code",
        "ul",
        "li",
        "a",
        "div",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "pre",
        "br",
    }, found["tags"]
    hrefs = [a for a in found["attributes"] if a.startswith("href=")]
    assert hrefs == [
        "href=https://example.com/a?b=1",
        "href=https://example.com/x.png",
        "href=https://example.com/docs",
        "href=https://example.com/b",
    ]
    assert found["nestedLinks"] == 0
    assert not [a for a in found["attributes"] if a.startswith(("on", "src", "style"))]
    # The markup is still there, as text to read.
    for text in ('<img src=x onerror="window.pwned=1">', "<script>", "<b>not bold</b>"):
        assert text in found["text"]
    took_ms = await page.evaluate(
        """async (source) => {
            const { renderMarkdown } = await import("/static/markdown.js");
            const started = performance.now();
            renderMarkdown(source);
            return performance.now() - started;
        }""",
        UNCLOSED,
    )
    assert took_ms < 3_000
    assert tab.errors == []
