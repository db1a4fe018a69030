"""A half-open time window on `updated_at`, as the vendor's incremental filters express it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from itertools import pairwise

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
# How far the vendor's clocks may be from ours: a timestamp further ahead is defective.
CLOCK_SKEW = timedelta(minutes=5)


def look_back(late_arrival: timedelta) -> timedelta:
    """How far before now a record can still land: filed up to `late_arrival` late, stamped
    by a clock up to CLOCK_SKEW behind ours."""
    return late_arrival + CLOCK_SKEW


def rfc3339(moment: datetime) -> str:
    """UTC, millisecond precision, `Z` suffix: the vendor's timestamp format."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def floor_ms(moment: datetime) -> datetime:
    """`moment` down to its millisecond: the vendor's filters have no finer resolution, so a
    window bound with microseconds would mean one thing to the vendor and another to SQL."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class Window:
    start: datetime  # inclusive
    end: datetime  # exclusive

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty window: {self.start} .. {self.end}")
        if floor_ms(self.start) != self.start or floor_ms(self.end) != self.end:
            raise ValueError(f"window bounds must be whole milliseconds: {self}")

    @classmethod
    def between(cls, start: datetime, end: datetime) -> Window:
        """The window from `start` to `end`, both down to the millisecond."""
        return cls(floor_ms(start.astimezone(UTC)), floor_ms(end.astimezone(UTC)))

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def split_at(self, points: Iterable[datetime]) -> list[Window]:
        """This window cut at `points` (to the millisecond; points outside it are ignored)."""
        cuts = sorted({floor_ms(p) for p in points if self.start < floor_ms(p) < self.end})
        bounds = [self.start, *cuts, self.end]
        return [Window(a, b) for a, b in pairwise(bounds)]

    @cached_property
    def _bounds(self) -> tuple[str, str]:
        # Formatted once: every page request of the window, and its messages, use them.
        return rfc3339(self.start), rfc3339(self.end)

    def query_params(self) -> dict[str, str]:
        return {"updated_since": self._bounds[0], "updated_before": self._bounds[1]}

    def __str__(self) -> str:
        return f"[{self._bounds[0]}, {self._bounds[1]})"
