"""The HTTP surface: the aiohttp app and its typed state, tokens and roles, request bodies,
JSON responses, the one mapping of errors to statuses, and the handlers in ``api/``.

May import ``scan``, ``store``, ``events`` and the shared modules; of ``sink`` and
``warehouse`` only what their package exports, never their internals; not ``ops`` or ``cli``.
"""
