"""The delimiters a message declares in MSH-1 and MSH-2."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Separators:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""   # MSH-2 fifth character (v2.7+), kept only to echo it

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as it is written: component, repetition, escape, subcomponent."""
        return (self.component + self.repetition + self.escape
                + self.subcomponent + self.truncation)


DEFAULT = Separators()
