"""Spreadsheet cell references: column letters <-> 0-based indexes, ``B7`` -> (row, column)."""

from __future__ import annotations


def column_index(letters: str) -> int:
    """0-based index of an Excel column name (A -> 0, AA -> 26)."""
    index = 0
    for char in letters.upper():
        index = index * 26 + ord(char) - ord("A") + 1
    return index - 1


def column_letters(index: int) -> str:
    """Excel column name of a 0-based index (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def cell_position(ref: str) -> tuple[int, int]:
    """``B7`` -> (7, 1): 1-based row, 0-based column."""
    letters = ref.rstrip("0123456789")
    return int(ref[len(letters) :]), column_index(letters)
