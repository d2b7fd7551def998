"""The long-lived objects handlers need, built once in main() and passed in."""

from __future__ import annotations

from dataclasses import dataclass

from bot.research import ResearchService
from storage.sqlite import Store


@dataclass(frozen=True, slots=True)
class Services:
    store: Store
    research: ResearchService
