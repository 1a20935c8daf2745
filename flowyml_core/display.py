"""How values are shown to people: durations, and names that may hold control characters.

Shared by everything that prints (the CLI's listings, run progress,
diagrams), and light: no import of its own, so a command that only prints
pays nothing for it.
"""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """``0.012s``, ``3.40s``, ``2m05s``, ``1h02m``: short, and precise where it matters."""
    if seconds < 10:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def count(n: int, noun: str) -> str:
    """``1 step``, ``3 steps``: a number with its noun, plural only when it should be."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def printable(text: str) -> str:
    """``text`` with control and other invisible characters escaped, for a terminal.

    Stack names, flavors and option keys come from ``stacks.toml`` files that
    arrive with a cloned repository, step names from code: printed raw, a name
    holding ``\\x1b[2J`` or a newline would clear, recolour or forge lines on
    the reader's terminal, or break the line of a diagram it is on.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
