"""The one way benchmark scripts add a section to benchmarks/RESULTS.md: newest first, under its header."""

from __future__ import annotations

from pathlib import Path

MARKER = "Newest first.\n\n"


def prepend_section(results: Path, text: str) -> None:
    """Puts ``text`` (a Markdown section) first after the file's "Newest first." line."""
    content = results.read_text(encoding="utf-8")
    head, found, rest = content.partition(MARKER)
    if not found:
        raise ValueError(f"{results}: no line 'Newest first.' to put the section under")
    results.write_text(head + MARKER + text.rstrip("\n") + "\n\n" + rest, encoding="utf-8")
