"""The function both sides of ``bench_isolation.py`` run in a fresh process (a module of its own,
so that each side imports the same thing by reference and nothing of the benchmark script)."""

from __future__ import annotations

from typing import Any


def work(x: int) -> int:
    return x + 1


def run_and_send(conn: Any, x: int) -> None:
    """The bare multiprocessing baseline's process body: run the function, send its value back."""
    conn.send(work(x))
    conn.close()


def echo(data: bytes) -> bytes:
    return data


def echo_and_send(conn: Any) -> None:
    """The baseline of the data row: receive the bytes, send them back."""
    conn.send(echo(conn.recv()))
    conn.close()
