"""The `try: curl ...` hint `linkrift dev` prints: a command a shell runs as is, also from a log file."""

from __future__ import annotations

import io
import subprocess

import pytest

from cli import dev

KEY = "lr_" + "k" * 40
BASE = "http://127.0.0.1:54321"


@pytest.mark.parametrize("width", [40, 80, 200])
def test_curl_hint_runs_as_printed_whatever_the_console_width(
    monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(dev.console, "file", out)
    monkeypatch.setattr(dev.console, "width", width)  # a log file is 80 columns to rich
    dev.print_curl_hint(KEY, BASE)
    printed = out.getvalue()
    lines = printed.rstrip("\n").split("\n")
    assert lines[0].startswith("  try: curl ")
    assert all(line.endswith(" \\") for line in lines[:-1]), printed
    command = printed.split("try: ", 1)[1]
    # The shell sees exactly the intended argv: a `curl` function prints its arguments.
    argv = subprocess.run(
        ["bash", "-c", 'curl() { printf "%s\\n" "$@"; }\n' + command],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert argv == [
        "-H",
        f"Authorization: Bearer {KEY}",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"url":"https://example.com"}',
        f"{BASE}/api/v1/links",
    ]
