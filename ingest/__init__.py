"""scanward's I/O: the only package with sockets. It runs the commands that the sans-I/O
domain packages (``codes``, ``fraud``, ``rewards``) compute, in one sub-package per job:

- ``http``: the aiohttp app, auth, request bodies, responses, the error mapping, ``api/``;
- ``scan``: the scan path (micro-batcher, decision steps, fraud and reward stages);
- ``store``: Redis (the script runner, the thin pipelined client, caches of Redis state);
- ``events``: the stream entries the scan path writes and the sink reads;
- ``sink``: Redis streams into ClickHouse exactly once, and the reference mirrors;
- ``warehouse``: ClickHouse (client, migrations, rollups, export, alerts, prize audit);
- ``ops``: local services, the supervisor, the server process, the demo, logging;
- ``cli``: the ``scanward`` command.

Shared by all: ``config`` (settings), ``errors`` (the error tree with HTTP statuses),
``metrics`` and ``stage_timer``. Nothing here imports ``benchmarks``.
"""
