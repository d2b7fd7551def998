"""Folds research events into what the live progress message shows."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from bot.qwen.events import (
    ANSWER,
    PLANNING,
    WEB_RESEARCH,
    Event,
    PhaseStatus,
    ResearchGoal,
    RoundFinished,
    SitesFound,
)


class Stage(StrEnum):
    CLARIFYING = "clarifying"  # the model reads the request and asks its question
    STARTING = "starting"
    PLANNING = "planning"
    SEARCHING = "searching"
    WRITING = "writing"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"
    UNDELIVERED = "undelivered"  # finished, but Slack has not taken the report yet
    INTERRUPTED = "interrupted"  # its process stopped or died; the thread says what follows


@dataclass(frozen=True, slots=True)
class ProgressView:
    stage: Stage
    round: int  # the search round in progress or last seen; 0 before the first
    rounds_finished: int
    goal: str  # the current round's research goal
    sources: int  # distinct web pages found so far
    elapsed_seconds: int


class ProgressTracker:
    """Mutable fold of one run's events; `changed` says whether a re-render is due."""

    def __init__(self) -> None:
        self._stage = Stage.STARTING
        self._round = 0
        self._finished_rounds: set[int] = set()
        self._goals: dict[int, str] = {}
        self._urls: set[str] = set()
        self.changed = True

    def apply(self, event: Event) -> None:
        # Called for every event of a stream; only a change of stage, round, goal or count
        # costs more than a type check.
        if type(event) is PhaseStatus:
            stage = _stage_of(event.phase, self._stage)
            if stage is not self._stage:
                self._stage = stage
                self.changed = True
            return
        if type(event) not in _FOLDED:
            return
        before = self._snapshot()
        match event:
            case ResearchGoal(round_id=round_id, goal=goal):
                self._round = max(self._round, round_id)
                # Goals may stream in pieces; they add up per round.
                self._goals[round_id] = self._goals.get(round_id, "") + goal
            case SitesFound(round_id=round_id, sites=sites):
                self._round = max(self._round, round_id)
                self._urls.update(site.url or site.title for site in sites)
            case RoundFinished(round_id=round_id):
                self._finished_rounds.add(round_id)
            case _:
                return
        if self._snapshot() != before:
            self.changed = True

    @property
    def stage(self) -> Stage:
        return self._stage

    def end(self, stage: Stage) -> None:
        self._stage = stage
        self.changed = True

    def view(self, elapsed_seconds: float) -> ProgressView:
        self.changed = False
        return ProgressView(
            stage=self._stage,
            round=self._round,
            rounds_finished=len(self._finished_rounds),
            goal=self._goals.get(self._round, "").strip(),
            sources=len(self._urls),
            elapsed_seconds=int(elapsed_seconds),
        )

    def _snapshot(self) -> tuple[object, ...]:
        return (
            self._stage,
            self._round,
            len(self._finished_rounds),
            self._goals.get(self._round),
            len(self._urls),
        )


_FOLDED: Final = frozenset({ResearchGoal, SitesFound, RoundFinished})


def _stage_of(phase: str, current: Stage) -> Stage:
    if phase == PLANNING:
        return Stage.PLANNING
    if phase == WEB_RESEARCH:
        return Stage.SEARCHING
    if phase == ANSWER:
        return Stage.WRITING
    return current  # an undocumented phase does not move the view backwards
