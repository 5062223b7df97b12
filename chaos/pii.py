"""Looks for the run's raw emails and phone numbers in any text (rows, payloads, logs, broker).

Emails: every raw address is `Chaos.User<n>@Example.com`, so any `chaos.user` or `@example.com`
in any letter case is a leak (that also covers the lowercased, normalised form).
Phones: every digit run (spaces, dashes, dots and parentheses allowed inside) that stands alone
- not glued to letters or digits, which is how a digit run inside a SHA-256 hex or a request id
looks - is reduced to its digits and compared with each lead's 10-digit national number (so
`+1 213 300 0001`, `(213) 300-0001`, `+12133000001` and `2133000001` are all found).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

_EMAIL_MARKERS = re.compile(r"chaos\.user|@example\.com", re.IGNORECASE)
_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])\+?\d[\d \-().]{8,}\d(?![0-9A-Za-z])")
_NON_DIGITS = re.compile(r"\D")
NATIONAL_LENGTH = 10
MAX_FINDINGS_KEPT = 50


@dataclass
class PiiScanner:
    national_numbers: set[str]
    findings: list[str] = field(default_factory=list)
    count: int = 0
    scanned_chars: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_numbers(cls, numbers: Iterable[str]) -> PiiScanner:
        return cls(national_numbers=set(numbers))

    def scan(self, text: str, where: str) -> int:
        """Scans `text`; returns how many leaks it found there (each one is remembered)."""
        found: list[str] = []
        for match in _EMAIL_MARKERS.finditer(text):
            found.append(f"{where}: email text {_context(text, match.start(), match.end())}")
        for match in _DIGIT_RUN.finditer(text):
            digits = _NON_DIGITS.sub("", match.group())
            if self._has_phone(digits):
                found.append(f"{where}: phone digits {_context(text, match.start(), match.end())}")
        with self._lock:
            self.scanned_chars += len(text)
            self.count += len(found)
            room = MAX_FINDINGS_KEPT - len(self.findings)
            self.findings.extend(found[: max(room, 0)])
        return len(found)

    def _has_phone(self, digits: str) -> bool:
        return any(
            digits[i : i + NATIONAL_LENGTH] in self.national_numbers
            for i in range(len(digits) - NATIONAL_LENGTH + 1)
        )


def _context(text: str, start: int, end: int, width: int = 40) -> str:
    snippet = text[max(0, start - width) : end + width].replace("\n", " ")
    return repr(snippet)
