"""How the benchmark scripts print their results: a title, a header row, rows and a note."""

from __future__ import annotations

from collections.abc import Iterable


def print_table(title: str, head: str, rows: Iterable[str], note: str) -> None:
    """Print ``title`` after a blank line, ``head`` underlined, one line per row, ``note``."""
    print(f"\n{title}")
    print(head)
    print("-" * len(head))
    for row in rows:
        print(row)
    print(note)
