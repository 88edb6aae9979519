"""Running scanward: private Redis and ClickHouse servers on loopback, the supervisor of worker
processes, the API server process, the demo data, JSON logs and the garbage collector's tuning.
May import every ingest package but ``cli``.
"""
