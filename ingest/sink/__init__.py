"""Redis streams into ClickHouse exactly once: the event families, stream reading and
acknowledging, the leases that share the streams out among the sinks, inserts built apart
from the writer, the ClickHouse shard each row goes to, the tables' identity checks, and the
mirrors of batches, shipments and distributors. May import ``store``, ``warehouse``, ``events``
and the domain packages; not ``scan`` or anything above.

What other packages may use: ``STATS_KEY`` (the sink's figures in Redis), ``CHANGE_STREAMS``
and ``lease_key`` (which sink holds a stream).
"""

from ingest.sink.lease import lease_key
from ingest.sink.mirror import CHANGE_STREAMS
from ingest.sink.streams import STATS_KEY

__all__ = ["CHANGE_STREAMS", "STATS_KEY", "lease_key"]
