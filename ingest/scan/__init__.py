"""The scan path: requests parsed, micro-batched, verified, judged by the fraud stage, recorded
by ``scan_state.lua`` with their events, and drawn for prizes; answered only after Redis
acknowledged the event. May import the layers below it (``store``,
``warehouse``, ``events``) and the domain packages; not ``sink``, ``http`` or anything above.
"""
