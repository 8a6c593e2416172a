"""Counts in messages read as words: '1 package', '6 packages', never 'package(s)'."""


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
