"""The phases of one invocation's output, in the order the tool prints them.

An invocation's assembler remembers the latest phase it has seen: a line of an earlier phase
after it belongs to the next invocation, and a failure is classified by how far the tool got.
"""

from __future__ import annotations

from typing import Final

NONE: Final = 0  # nothing of the invocation yet
START: Final = 1  # STARTING!
PARAMS: Final = 2  # the parameter echo
INIT: Final = 3  # loading the model, applying delegates, initializing the session
RUN: Final = 4  # warm-up and timed runs (count= lines)
SUMMARY: Final = 5  # the timing summary (or LiteRT's BENCHMARK RESULTS block)
POST: Final = 6  # memory footprint lines
