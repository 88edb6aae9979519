"""The ceiling for the scan path: aiohttp on uvloop answering the same JSON POST with no work.

``python -m benchmarks.hello_server PORT`` serves ``POST /v1/scans`` (parse the JSON body, answer
a small JSON object) and ``POST /v1/scans/bulk`` (the same for every line of an NDJSON body, one
answer line each: the ceiling of bulk ingest) on 127.0.0.1 with SO_REUSEPORT, so N copies share
the port like the workers of ``scanward serve --workers N``.
"""

from __future__ import annotations

import sys

import orjson
import uvloop
from aiohttp import web


async def scan(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    answer = {"scan_id": "0", "verdict": "genuine", "code": body.get("code")}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def bulk(request: web.Request) -> web.Response:
    answers = []
    for line in (await request.read()).split(b"\n"):
        if line.strip():
            body = orjson.loads(line)
            answer = {"scan_id": "0", "verdict": "genuine", "code": body.get("code")}
            answers.append(orjson.dumps(answer) + b"\n")
    return web.Response(body=b"".join(answers), content_type="application/x-ndjson")


async def health(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/scans", scan)
    app.router.add_post("/v1/scans/bulk", bulk)
    app.router.add_get("/healthz", health)
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        reuse_port=True,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
