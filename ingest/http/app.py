"""The aiohttp application: routes, error mapping and the resources it opens and closes."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from ingest.config import Settings
from ingest.errors import ApiError, Unavailable
from ingest.http.api import (
    alerts,
    batches,
    campaigns,
    codes,
    distributors,
    health,
    members,
    openapi,
    scans,
    shipments,
    tokens,
)
from ingest.http.auth import Handler
from ingest.http.client_address import ClientAddress
from ingest.http.error_mapping import DOMAIN_ERRORS, api_error
from ingest.http.responses import error_response, json_response
from ingest.http.state import (
    BATCHES,
    CAMPAIGNS,
    CLIENT_ADDRESS,
    KEYRING,
    REDIS,
    REFERENCES,
    SCANS,
    SETTINGS,
    TOKENS,
    VERIFIERS,
)
from ingest.http.tokens import TokenStore
from ingest.http.transport import expect_continue
from ingest.metrics import UNMATCHED_ROUTE, publish_request_metrics, route_metrics
from ingest.scan.fraud_stage import FraudStage
from ingest.scan.pipeline import ScanPipeline
from ingest.scan.reward_stage import RewardStage
from ingest.store import connect
from ingest.store.batches import BatchStore
from ingest.store.campaigns import CampaignSource
from ingest.store.keyring import KeyringSource
from ingest.store.layout import check_layout_async
from ingest.store.outage import STORE_FAILURES
from ingest.store.references import ReferenceSource
from ingest.store.scripts import AsyncRedis, ScriptRunner
from ingest.store.verifiers import VerifierSource

log = logging.getLogger(__name__)

_REDIS_TIMEOUT_S = 5.0
# the handler modules, each with its routes
_RESOURCES = (
    alerts,
    batches,
    campaigns,
    codes,
    distributors,
    health,
    members,
    openapi,
    scans,
    shipments,
    tokens,
)


def json_errors(handler: Handler, method: str, route: str) -> Handler:
    """Every error of ``handler`` leaves as JSON ``{"error": {"code", "message"}}``; a domain
    error with the status ``ingest.http.error_mapping`` gives it. Each answer is timed and
    counted under the route's method and path template (``ingest.metrics.RouteMetrics``).

    A wrapper per route rather than a middleware: any aiohttp middleware adds two layers to
    every request (its own and aiohttp's current-app fix-up), 7% of the scan path's throughput.
    """
    measured = route_metrics(method, route)

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except ApiError as error:
            response = error_response(error)
        except DOMAIN_ERRORS as error:
            response = error_response(api_error(error))
        except STORE_FAILURES:
            log.exception("Redis is unavailable")
            response = error_response(
                Unavailable("the scan state store is unreachable; retry shortly")
            )
        except web.HTTPException as error:
            if error.status < 400:
                measured.observe(error.status, time.perf_counter() - started)
                raise
            response = _http_error(error.status, error.reason)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = json_response(ApiError("internal error").body(), status=500)
        measured.observe(response.status, time.perf_counter() - started)
        return response

    return guarded


async def unmatched(request: web.Request) -> web.StreamResponse:
    """The last route: JSON 405 (with ``Allow``) for a known path, JSON 404 for the rest."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        response = _http_error(405, "Method Not Allowed")
        response.headers["Allow"] = ",".join(sorted(allowed))
        return response
    return _http_error(404, "Not Found")


def _http_error(status: int, reason: str) -> web.Response:
    code = reason.lower().replace(" ", "_")
    return json_response({"error": {"code": code, "message": reason}}, status)


async def redis_and_stores(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.redis_url is None or settings.keyring_secret is None:
        raise RuntimeError("the app needs SCANWARD_REDIS_URL and SCANWARD_KEYRING_SECRET")
    app[KEYRING] = KeyringSource(settings.keyring_file, settings.keyring_secret)
    redis = connect.async_client(settings.redis_url)
    await _check_layout(redis, settings)
    app[REDIS] = redis
    app[BATCHES] = BatchStore(redis)
    app[TOKENS] = TokenStore(redis, settings.admin_token)
    app[VERIFIERS] = VerifierSource(app[KEYRING], app[BATCHES])
    app[REFERENCES] = ReferenceSource(redis)
    app[CAMPAIGNS] = CampaignSource(redis, settings.member_tiers)
    yield
    await redis.aclose()


async def _check_layout(redis: AsyncRedis, settings: Settings) -> None:
    """The partition counts against the store's; with Redis down scans get 503s until it is
    back, and the counts are checked by the next start (a sink's start checks them too)."""
    assert settings.redis_url is not None
    try:
        await check_layout_async(redis, settings.partitions, connect.addresses(settings.redis_url))
    except STORE_FAILURES as error:
        log.warning("partition counts not checked: Redis is unavailable: %s", error)


async def scan_pipeline(app: web.Application) -> AsyncIterator[None]:
    """The scan path has its own pipelined connection; on shutdown queued scans finish first."""
    settings = app[SETTINGS]
    assert settings.redis_url is not None
    redis = connect.scan_client(
        settings.redis_url,
        _REDIS_TIMEOUT_S,
        settings.redis_wait_replicas,
        settings.redis_wait_timeout_ms,
    )
    scripts = ScriptRunner(redis)
    app[CLIENT_ADDRESS] = ClientAddress(settings.trusted_proxies)
    fraud = FraudStage(scripts, app[REFERENCES], settings.fraud_policy, settings.partitions)
    rewards = RewardStage(scripts, app[CAMPAIGNS], settings.scan_id_ttl_s)
    app[SCANS] = ScanPipeline(
        scripts,
        app[VERIFIERS],
        fraud,
        rewards,
        settings.partitions,
        settings.max_unsunk_events,
        settings.scan_id_ttl_s,
    )
    yield
    await app[SCANS].close()
    await redis.close()


async def _publish_last_request_counts(app: web.Application) -> None:
    """A stopping process's counts of its last second (``ingest.metrics.RouteMetrics``)."""
    publish_request_metrics()


def create_app(settings: Settings) -> web.Application:
    # read_body applies each endpoint's own limit; this only has to admit the largest
    largest_body = max(settings.max_body_bytes, settings.max_bulk_bytes)
    app = web.Application(client_max_size=largest_body)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(redis_and_stores)
    app.cleanup_ctx.append(scan_pipeline)
    app.on_cleanup.append(_publish_last_request_counts)
    for module in _RESOURCES:
        for route in module.routes:
            assert isinstance(route, web.RouteDef)
            guarded = json_errors(route.handler, route.method, route.path)
            options = {"expect_handler": expect_continue, **route.kwargs}
            web.RouteDef(route.method, route.path, guarded, options).register(app.router)
    app.router.add_route(
        "*",
        "/{path:.*}",
        json_errors(unmatched, "*", UNMATCHED_ROUTE),
        expect_handler=expect_continue,
    )
    return app
