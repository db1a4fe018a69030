"""A half-open time window on `updated_at`, as the vendor's incremental filters express it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339(moment: datetime) -> str:
    """UTC, millisecond precision, `Z` suffix: the vendor's timestamp format."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Window:
    start: datetime  # inclusive
    end: datetime  # exclusive

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty window: {self.start} .. {self.end}")

    def query_params(self) -> dict[str, str]:
        return {"updated_since": rfc3339(self.start), "updated_before": rfc3339(self.end)}

    def __str__(self) -> str:
        return f"[{rfc3339(self.start)}, {rfc3339(self.end)})"
