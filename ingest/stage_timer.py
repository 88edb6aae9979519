"""Time spent in the scan path's synchronous stages, always on, in ``/metrics``.

Each stage has one ``StageTimer``; ``with VERIFY:`` adds the time of its block to the stage.
The pending times go to the counter ``scanward_scan_stage_seconds_total{stage=...}`` at the end
of each micro-batch (``publish``), because an increment in prometheus-client's multiprocess
mode costs about a microsecond and a timed block about a fifth of that. A scrape sums the
workers; divided by the scans answered, these are each stage's CPU time per scan.

The stages, in the order a scan meets them:

- ``parse``: reading the request: its client address, the JSON of its body (or the lines of a
  bulk body) and ``parse_scan``;
- ``verify``: verifying a micro-batch's codes;
- ``fraud``: the fraud stage's own work: the scans' facts, placing them, building its Redis
  commands, reading their replies, the rules;
- ``record``: each scan's event and scan-state argument, the scan-state calls, reading their
  replies and answering the scans;
- ``redis_client``: the Redis client's own work: turning calls into commands, encoding them and
  parsing the replies (``ScriptRunner``'s part also for the admin endpoints' rare scripts);
- ``rewards``: who enters which draw, the draw calls, reading their outcomes;
- ``respond``: the result as JSON and the response (for a bulk upload, its output lines).

Not counted: aiohttp's HTTP parsing and writing, the event loop and its system calls (the
Redis socket's included), the glue between regions (handing scans to the pipeline, awaiting
their futures, slicing a micro-batch's replies) and ``publish`` itself. The benchmark reports those
as the API process's CPU less the stages.

Rule: regions never nest, so nothing is counted twice. A region is a stretch of synchronous
code that contains no ``await`` (while a coroutine is suspended, the time is another's) and
calls no other region's code. Work of another stage that runs inside an awaited call, such as
``ScriptRunner.run_many`` encoding commands before its first suspension, therefore lies outside
the caller's region: the caller's region ends before its ``await``. A test through the app
(``tests/test_stage_timer.py``) fails when a region opens inside another.

Times are wall-clock nanoseconds of code that does not block, so CPU time unless the process
is preempted mid-block (on a loaded machine the stages then read slightly high).
"""

from __future__ import annotations

from time import perf_counter_ns
from types import TracebackType

from ingest import metrics


class StageTimer:
    """One stage's time: ``with timer:`` around a region; reused, as regions never overlap."""

    __slots__ = ("_counter", "_started_ns", "pending_ns", "stage")

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.pending_ns = 0
        """Timed since the last ``publish``."""
        self._started_ns = 0
        self._counter = metrics.SCAN_STAGE_SECONDS.labels(stage)  # shown at 0 until timed

    def __enter__(self) -> None:
        self._started_ns = perf_counter_ns()

    def __exit__(  # named parameters: packing them as *args costs a tuple per block
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.pending_ns += perf_counter_ns() - self._started_ns

    def publish(self) -> None:
        if self.pending_ns:
            self._counter.inc(self.pending_ns / 1e9)
            self.pending_ns = 0


PARSE = StageTimer("parse")
VERIFY = StageTimer("verify")
FRAUD = StageTimer("fraud")
RECORD = StageTimer("record")
REDIS_CLIENT = StageTimer("redis_client")
REWARDS = StageTimer("rewards")
RESPOND = StageTimer("respond")
STAGES = (PARSE, VERIFY, FRAUD, RECORD, REDIS_CLIENT, REWARDS, RESPOND)


def publish() -> None:
    """Adds every stage's pending time to the counter; once per micro-batch."""
    for timer in STAGES:
        timer.publish()
