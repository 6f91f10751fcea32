"""A circuit breaker: after a few failures stop paying the timeout, probe now and then,
close again by itself when the backend answers."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """`failures` in a row open it for `cooldown` seconds, doubling up to `max_cooldown`.

    Half-open lets one probe through at a time. A probe that never reports back (its
    caller was cancelled, or took a path that reports nothing) does not wedge the breaker:
    after `probe_timeout` seconds another caller may probe."""

    def __init__(
        self,
        failures: int = 3,
        cooldown: float = 0.5,
        max_cooldown: float = 10.0,
        probe_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.probe_timeout = probe_timeout
        self._clock = clock
        self.state = State.CLOSED
        # Told of every change of state (a metrics gauge, for one).
        self.on_change: Callable[[State], None] | None = None
        self._failures = 0
        self._cooldown = cooldown
        self._reopen_at = 0.0
        self._probe_at = 0.0

    def allow(self) -> bool:
        """May a call go to the backend now? In half-open, only the one probe may."""
        if self.state is State.CLOSED:
            return True
        now = self._clock()
        if self.state is State.OPEN and now >= self._reopen_at:
            self._enter(State.HALF_OPEN)
            self._probe_at = now
            return True
        if self.state is State.HALF_OPEN and now - self._probe_at >= self.probe_timeout:
            self._probe_at = now  # the last probe went silent: let this one try
            return True
        return False

    def success(self) -> bool:
        """Record a success; True when this closes an open breaker."""
        recovered = self.state is not State.CLOSED
        if recovered:
            self._enter(State.CLOSED)
        self._failures = 0
        self._cooldown = self.base_cooldown
        return recovered

    def failure(self) -> bool:
        """Record a failure; True when this opens the breaker."""
        self._failures += 1
        if self.state is State.HALF_OPEN or self._failures >= self.threshold:
            opening = self.state is not State.OPEN
            if self.state is State.HALF_OPEN:
                self._cooldown = min(self._cooldown * 2, self.max_cooldown)
            self._enter(State.OPEN)
            self._reopen_at = self._clock() + self._cooldown
            return opening
        return False

    def _enter(self, state: State) -> None:
        changed = state is not self.state
        self.state = state
        if changed and self.on_change is not None:
            self.on_change(state)
