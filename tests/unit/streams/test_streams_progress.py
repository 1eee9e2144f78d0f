"""Long CLI work reports counts and rate on stderr: click's bar on a terminal, count lines elsewhere."""

from __future__ import annotations

import asyncio
import io
import re
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from schema_registry.server import start_server
from schema_registry.server.store import MemoryLog
from streams.cli import main
from streams.progress import Progress
from streams.topics import TOPIC_RECORDS


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_without_a_terminal_counts_are_printed_as_lines_and_at_the_end() -> None:
    out = io.StringIO()
    with Progress("replaying", total=250, file=out, line_every_s=0) as progress:
        for done in (100, 200, 250):
            progress.update(done)
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "replaying: 100/250", "replaying: 200/250", "replaying: 250/250", "replaying: 250/250"]
    assert all(re.search(r"\([\d.,]+/s\)$", line) for line in lines)


def test_without_a_terminal_lines_are_throttled_but_the_last_count_always_shows() -> None:
    out = io.StringIO()
    with Progress("re-enriching", total=0, file=out, line_every_s=3600) as progress:
        for done in range(1, 1001):
            progress.update(done, 1000)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("re-enriching: 1000/1000 (")


def test_on_a_terminal_it_is_clicks_bar_with_position_and_rate() -> None:
    out = Terminal()
    with Progress("replaying", total=40, file=out) as progress:
        for done in range(1, 41):
            progress.update(done)
    text = out.getvalue()
    assert "replaying" in text and "40/40" in text and "/s" in text and "#" in text


@pytest.fixture
def registry_url() -> Iterator[str]:
    """The embedded registry (in memory) on its own loop, so the CLI can run its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(start_server(None, port=0, log_=MemoryLog()), loop).result(10)
    yield running.url
    asyncio.run_coroutine_threadsafe(running.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_schemas_register_reports_progress_on_stderr_and_results_on_stdout(registry_url: str) -> None:
    result = CliRunner().invoke(main, ["schemas", "register", "--url", registry_url])
    assert result.exit_code == 0, result.output
    total = len(TOPIC_RECORDS)
    assert re.search(rf"^registering schemas: {total}/{total} \([\d.,]+/s\)$", result.stderr, re.M)
    assert result.stdout.count("ok  ") == total and "registering" not in result.stdout


def test_nothing_to_count_prints_nothing() -> None:
    out = io.StringIO()
    with Progress("re-enriching", total=0, file=out, line_every_s=0):
        pass
    assert out.getvalue() == ""
