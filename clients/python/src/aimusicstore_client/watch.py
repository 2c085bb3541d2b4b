"""What the vote feed watchers share: how a dropped stream is resumed, and
how the events it may have missed are reported.

A watcher remembers the `event_id` of the last event it yielded. When the
stream drops (the gateway restarts, the connection breaks, the service
closes a watcher that fell behind), it reconnects with backoff, asking for
the events after that id (`after_event_id`): the service sends the events
since first, so nothing is missed. When the service no longer holds them
(OUT_OF_RANGE: too long ago, or too many since), the watcher reconnects from
now on and records a `FeedGap`: an unknown number of events were missed.
A drop before any event was seen has no id to resume from: that is a gap
too (the watcher could not know what happened while it reconnected).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc

from aimusicstore_client.errors import AimusicstoreError, OutOfRange

__all__ = ["FeedGap", "WatchState"]


@dataclass(frozen=True)
class FeedGap:
    """Events may have been missed between `after_event_id` (the last event
    yielded before the gap; empty when none had been) and the first event
    after `resumed_at`. How many is unknown (`missed` is None)."""

    after_event_id: str
    resumed_at: datetime
    reason: str
    missed: int | None = None


# A dropped stream is re-opened after these; anything else (a bad filter,
# a bad key) is raised to the caller.
RECONNECTABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,  # a reset stream (RST_STREAM) through a proxy
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,  # cancelled by the server or a proxy (our own close() ends the loop first)
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # fell behind, rate limited, or the gateway's stream limit
    }
)


@dataclass
class WatchState:
    """What a watch knows so far; the watchers expose it as attributes."""

    item_type: str = ""
    item_id: str = ""
    # The event_id of the last event yielded (or the after_event_id given).
    last_event_id: str = ""
    # Events yielded; connections opened (the first one included).
    events: int = 0
    connections: int = 0
    # Reconnections that resumed after last_event_id, nothing missed.
    resumed: int = 0
    gaps: list[FeedGap] = field(default_factory=list)
    on_gap: Callable[[FeedGap], None] | None = None
    # Failed attempts in a row (reset when a connection opens).
    failures: int = 0
    _resume_after: str = ""
    _open: bool = False
    _pending_gap: tuple[str, str] | None = None
    # The open connection was counted in `resumed` and has yielded nothing yet.
    _resumed_now: bool = False

    def __post_init__(self) -> None:
        self._resume_after = self.last_event_id

    @property
    def missed(self) -> int | None:
        """Events this watch may have missed: 0 while every reconnection
        resumed where it left off; None (unknown) once there was a gap."""
        return 0 if not self.gaps else None

    def after_event_id(self) -> str:
        """What the next connection resumes after ("" = from now on)."""
        return self._resume_after

    def opened(self) -> None:
        """A connection is open (the service sent its headers)."""
        if self._pending_gap is not None:
            after, reason = self._pending_gap
            self._pending_gap = None
            gap = FeedGap(after, datetime.now(UTC), reason)
            self.gaps.append(gap)
            if self.on_gap is not None:
                self.on_gap(gap)
        elif self.connections:
            self.resumed += 1
            self._resumed_now = True
        self.connections += 1
        self.failures = 0
        self._open = True

    def saw(self, event_id: str) -> None:
        self._resumed_now = False
        self.events += 1
        if event_id:
            self.last_event_id = self._resume_after = event_id

    def dropped(self, error: AimusicstoreError) -> bool:
        """The stream ended with `error`: whether to reconnect. After
        OUT_OF_RANGE the next connection starts from now and reports a gap."""
        was_open, self._open = self._open, False
        if isinstance(error, OutOfRange) and self._resume_after:
            if self._resumed_now:  # its replay was refused: not resumed after all
                self.resumed -= 1
            if self._pending_gap is None:
                self._pending_gap = (self._resume_after, error.message)
            self._resume_after = ""
        elif error.code not in RECONNECTABLE:
            return False
        elif was_open and not self._resume_after and self._pending_gap is None:
            self._pending_gap = ("", "the stream dropped before its first event: there was nothing to resume from")
        self._resumed_now = False
        self.failures += 1
        return True
