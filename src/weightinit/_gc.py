"""Building many long-lived objects with Python's cyclic garbage collector paused."""

from __future__ import annotations

import gc
from types import TracebackType


class collector_paused:
    """A context in which Python's cyclic garbage collector is paused; restored on leaving it
    (also on an error; left paused if it was paused already, e.g. by an outer one).

    Planning a deep model allocates tens of thousands of objects that live until the plan is
    made (the trace's nodes, the sweep's copy of the model), and every 700 allocations count
    towards a collection; the full ones walk the whole heap, the model included (75 ms each,
    twice per plan of a 1000-layer MLP: a sixth of the plan), and find nothing to free: those
    objects are freed by reference counting once the plan is made. The trace, the propagation
    and the calibration sweep build theirs in such a context; cyclic garbage made meanwhile
    waits for the next collection after it.

    Example:
        >>> import gc
        >>> from weightinit._gc import collector_paused
        >>> with collector_paused():
        ...     paused = not gc.isenabled()
        >>> paused, gc.isenabled()
        (True, True)
    """

    def __enter__(self) -> None:
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.was:
            gc.enable()
