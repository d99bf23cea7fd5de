"""Regexes for facts in English prose: dates, years, counted numbers, and the words that start a sentence without
naming anything. Evidence chains find answers with them; question synthesis rewrites the same spans."""

from __future__ import annotations

import re

MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December")
DATE = re.compile(
    rf"\b(?:(?:\d{{1,2}})\s+(?:{MONTHS}),?\s+\d{{3,4}}|(?:{MONTHS})\s+\d{{1,2}},\s+\d{{3,4}})\b")
# A year on its own: not a decade ("1880s"), not part of a range or a larger number, not a unit value.
YEAR = re.compile(
    r"(?<![\d,.\-/$£€])\b(1[0-9]{3}|20[0-2][0-9])\b(?!\d|,\d|s\b|\s*[-–]\s*\d|\s*(?:km|m|kg|ft|BC|BCE)\b)")
# A number followed by the word it counts: "450 passengers", "591,528 inhabitants", "44 percent".
NUMBER = re.compile(r"(?<![\d,.\-/])\b(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?:\s?(%|per ?cent\b))?(?=\s+[a-z]{3,}|\s?%)")
SENTENCE_STARTERS = frozenset("""
The A An In On At By For From During After Before Since As It Its This That These Those He She They His Her Their
When While Although Though However Many Most Some Other Both Each Following Under Until With Without Today Later
""".split())
