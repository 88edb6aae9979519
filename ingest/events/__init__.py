"""The stream entries between the scan path and the sink: scan events and prize draws, their
stream keys and partitions, how they are encoded and how they decode into columns. The lowest
layer of ``ingest``: imports none of its packages."""
