"""The rate limiter: which model instance may execute next.

Without rate limiting (``mode="off"``, Triton's default) an instance may execute whenever it is idle.
With ``mode="execution_count"`` an instance must also hold the *resources* its instance group
declares before it executes::

    instance_group [ { count: 2  rate_limiter { resources [ { name: "R1" count: 4 } ]  priority: 1 } } ]

Resources are abstract tokens (say, "GPU memory in GB" or "one of the 2 cores"): the server has a
fixed number of each (``resources`` below, e.g. from ``serve --rate-limit-resource R1:4``; a resource
not given gets the largest count any single instance asks for, as in Triton). An instance holds its
resources for the length of one execution, so instances of different models that share a resource
cannot all run at once; the rate limiter decides who waits. Among waiting instances whose resources
are free it picks the one with the smallest *virtual time*, which grows by the instance's
``priority`` each time it runs: an instance with priority 2 gets about half the turns of one with
priority 1 when both are busy, Triton's weighting. (With one device there is no difference between
``global`` and per-device resources.)

All methods run on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import itertools

from .errors import ConfigError

__all__ = ["RateLimiter", "RATE_LIMIT_MODES"]

RATE_LIMIT_MODES = ("off", "execution_count")


class RateLimiter:
    """Grants instances the right to execute one batch."""

    def __init__(self, mode: str = "off", resources: dict[str, int] | None = None):
        if mode not in RATE_LIMIT_MODES:
            raise ValueError(f"rate limit mode must be one of {RATE_LIMIT_MODES}, got {mode!r}")
        self.mode = mode
        self.explicit = dict(resources or {})
        self.capacity: dict[str, int] = dict(self.explicit)
        self.in_use: dict[str, int] = {}
        self._waiters: list[tuple[int, asyncio.Future, list]] = []
        self._order = itertools.count()

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def register(self, instances) -> None:
        """Make the instances' resource needs known; fails if one needs more than the server has."""
        if not self.enabled:
            return
        for inst in instances:
            for name, count in inst.resources.items():
                if name in self.explicit:
                    if count > self.explicit[name]:
                        raise ConfigError(f"instance {inst.name} needs {count} of resource {name!r} but the "
                                          f"server has {self.explicit[name]}")
                else:
                    self.capacity[name] = max(self.capacity.get(name, 0), count)

    def _fits(self, inst) -> bool:
        if inst.busy:
            return False
        if not self.enabled:
            return True
        return all(self.in_use.get(n, 0) + c <= self.capacity.get(n, 0) for n, c in inst.resources.items())

    def _grant(self, inst) -> None:
        inst.busy = True
        inst.vtime += inst.priority
        if self.enabled:
            for n, c in inst.resources.items():
                self.in_use[n] = self.in_use.get(n, 0) + c

    def _pick(self, candidates):
        best = None
        for inst in candidates:
            if self._fits(inst) and (best is None or inst.vtime < best.vtime):
                best = inst
        return best

    async def acquire(self, candidates: list) -> object:
        """Wait until one of ``candidates`` (a model's instances) may execute; return it, marked busy."""
        if not self._waiters:
            inst = self._pick(candidates)
            if inst is not None:
                self._grant(inst)
                return inst
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((next(self._order), fut, candidates))
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(fut.result())
            self._waiters = [w for w in self._waiters if w[1] is not fut]
            raise

    def release(self, inst) -> None:
        """``inst`` finished executing: free it and its resources, and wake whoever may run now."""
        inst.busy = False
        if self.enabled:
            for n, c in inst.resources.items():
                self.in_use[n] -= c
        self._dispatch()

    def _dispatch(self) -> None:
        while self._waiters:
            # The waiter whose best available instance has the smallest virtual time goes first;
            # ties keep arrival order.
            choice = None
            for i, (order, fut, candidates) in enumerate(self._waiters):
                if fut.done():
                    continue
                inst = self._pick(candidates)
                if inst is not None and (choice is None or (inst.vtime, order) < (choice[2].vtime, choice[1])):
                    choice = (i, order, inst, fut)
            self._waiters = [w for w in self._waiters if not w[1].done()]
            if choice is None:
                return
            _, order, inst, fut = choice
            self._waiters = [w for w in self._waiters if w[1] is not fut]
            self._grant(inst)
            fut.set_result(inst)
