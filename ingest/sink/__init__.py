"""Redis streams into ClickHouse exactly once: the event families, stream reading and
acknowledging, the lease of the one writer, inserts built apart from the writer, the tables'
identity checks, and the mirrors of batches, shipments and distributors. May import
``store``, ``warehouse``, ``events`` and the domain packages; not ``scan`` or anything above.

What other packages may use: ``STATS_KEY`` (the sink's figures in Redis) and ``CHANGE_STREAMS``.
"""

from ingest.sink.mirror import CHANGE_STREAMS
from ingest.sink.streams import STATS_KEY

__all__ = ["CHANGE_STREAMS", "STATS_KEY"]
