"""One-line error messages: the first line of exceptions whose text runs over many lines (pickle, HF,
SQLite), and short sizes for the numbers they name."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of ``exc``'s message (its type name when empty), cut to ``limit`` characters."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line[:limit] if limit else line


def _short(number: float, units: tuple[tuple[float, str], ...], last: str) -> str:
    scale, unit = next(((s, u) for s, u in units if number >= s), (1, last))
    text = f"{number / scale:.3g}"
    return f"{f'{number / scale:.0f}' if 'e' in text else text}{unit}"


def count_text(number: float) -> str:
    """1600000000 -> '1.6 G', 134217728 -> '134 M': pixel counts in messages."""
    return _short(number, ((1e9, " G"), (1e6, " M"), (1e3, " k")), "")


def bytes_text(number: float) -> str:
    """Bytes in messages: '64 GiB', '6.87 MiB', '900 bytes'."""
    return _short(number, ((2 ** 30, " GiB"), (2 ** 20, " MiB"), (2 ** 10, " KiB")), " bytes")
