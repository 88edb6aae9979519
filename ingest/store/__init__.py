"""Redis: the runner of the domain packages' script calls (error replies turned into their
exceptions once), the thin pipelined client of the scan path, and in-memory copies of Redis
state (batches, keyring, verifiers, reference data, campaigns) refreshed when it changes.
May import ``events`` and the domain packages.
"""
