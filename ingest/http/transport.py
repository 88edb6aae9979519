"""The HTTP transport under the app: slow and idle connections closed by timeouts, a cap on
open connections per worker, and the answers aiohttp gives by itself made JSON.

aiohttp alone waits about an hour for headers or a body that never end and for an idle
keep-alive, and runs out of descriptors rather than refuse a connection. Here every connection
is in one phase: waiting for a request (idle), reading its headers, reading its body, or being
handled. The first three are timed; a sweep each second closes those past their timeout, in
the order they entered the phase (each phase's connections are kept in that order, so a sweep
looks only at the expired ones). A body is timed only while the server reads it: while the app
leaves a large one unread, aiohttp stops reading and the connection counts as handled; its clock
starts again when reading resumes. A request pipelined behind another and begun before that one
is answered waits as idle until more of it comes, then as headers. At the cap, a new
connection closes the one that has waited longest for a whole request (idle or reading
headers), else for a body, or is closed itself if every other one is being handled. Closes are
counted in ``scanward_connections_closed_total{reason}`` and logged at most one line a minute.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import hdrs, web, web_response
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.http_exceptions import LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from ingest.errors import ApiError, BadRequest, ExpectationFailed, HeadersTooLarge
from ingest.http.responses import error_response
from ingest.metrics import CONNECTIONS_CLOSED

log = logging.getLogger(__name__)

SERVER_NAME = "scanward"
"""The ``Server`` header of every answer, in place of aiohttp's, which names its version and
Python's."""
SWEEP_EVERY_S = 1.0
LOG_EVERY_S = 60.0
REASONS = ("header_timeout", "body_timeout", "idle", "over_capacity", "hangup")
_CLOSED = {reason: CONNECTIONS_CLOSED.labels(reason) for reason in REASONS}


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """A worker's timeouts and cap (``Settings``, the cap fitted to its descriptor limit)."""

    header_timeout_s: float
    body_timeout_s: float
    idle_timeout_s: float
    max_connections: int


# A connection's phase: the first three are timed, each with its reason to close.
IDLE, HEADERS, BODY, HANDLING, CLOSED = range(5)
_TIMED = (IDLE, HEADERS, BODY)
_TIMEOUT_REASONS = ("idle", "header_timeout", "body_timeout")


class GuardedConnection(RequestHandler):
    """aiohttp's connection, telling its server when its phase changes, and answering the
    requests aiohttp refuses (malformed, headers too long) with JSON that echoes nothing."""

    __slots__ = ("guard", "payload", "phase")

    def __init__(self, guard: GuardedServer, **kwargs: Any) -> None:
        super().__init__(guard, **kwargs)
        self.guard = guard
        self.phase = HANDLING  # until connection_made
        self.payload: StreamReader | None = None

    def data_received(self, data: bytes) -> None:
        if self.phase == IDLE and data:  # the first bytes of a request (b"": reading resumed)
            self.guard.enter(self, HEADERS)
        RequestHandler.data_received(self, data)  # a third of super()'s cost, once per read

    def pause_reading(self) -> None:
        """The app has not read the body it has (the buffer is full): not the client's delay."""
        super().pause_reading()
        if self.phase == BODY:
            self.guard.enter(self, HANDLING)

    def resume_reading(self, resume_parser: bool = True) -> None:
        """The app reads the body again: the rest must come within the body timeout. Each
        restart of the clock needs a buffer's worth of body first, so a drip never gets one."""
        payload = self.payload
        if self.phase == HANDLING and payload is not None and not payload.is_eof():
            self.guard.enter(self, BODY)
        super().resume_reading(resume_parser)

    @property
    def reading_body(self) -> bool:
        """Whether the server waits on the client for more of the request's body."""
        payload = self.payload
        return payload is not None and not payload.is_eof() and not self._reading_paused

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self.guard.enter(self, IDLE)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's 400 for a request it cannot parse (431 here when a line is too long), and
        its 500 for an exception that escaped the app; ``message`` echoes the request, so it is
        not sent."""
        if request.writer.output_size > 0:  # as aiohttp: no error after part of an answer
            raise ConnectionError("the response has begun, no error can follow it")
        error: ApiError
        if isinstance(exc, LineTooLong):
            error = HeadersTooLarge("the request line or a header field is too long")
        elif status == 400:
            error = BadRequest("the request is not valid HTTP/1.1")
        else:
            log.error("unhandled error in the HTTP transport", exc_info=exc)
            error = ApiError("internal error")
        log.debug("refused a request: %s", type(exc).__name__)  # its text quotes the request
        response = error_response(error)
        response.force_close()
        return response


class GuardedServer(web.Server):
    """aiohttp's server of ``app_server``'s app, whose connections are ``GuardedConnection``s
    held to ``limits``."""

    def __init__(self, limits: ConnectionLimits, app_server: web.Server, **kwargs: Any) -> None:
        self._app_request = app_server.request_factory
        super().__init__(
            app_server.request_handler,
            request_factory=self._start_request,
            **kwargs,
        )
        self._limits = limits
        self._timeouts = (limits.idle_timeout_s, limits.header_timeout_s, limits.body_timeout_s)
        self._since: tuple[dict[GuardedConnection, float], ...] = ({}, {}, {})
        """Per timed phase, its connections and when each entered it, oldest first."""
        self._open = 0
        self._unlogged: Counter[str] = Counter()
        self._logged_at = -LOG_EVERY_S
        self._sweep_failed = False
        self._sweeping = self._loop.call_later(SWEEP_EVERY_S, self._sweep)

    def __call__(self) -> GuardedConnection:
        return GuardedConnection(self, loop=self._loop, **self._kwargs)

    def enter(self, connection: GuardedConnection, phase: int) -> None:
        previous = connection.phase
        if previous == CLOSED:
            return
        if previous <= BODY:
            del self._since[previous][connection]
        connection.phase = phase
        if phase <= BODY:
            self._since[phase][connection] = self._loop.time()

    def _start_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        connection = cast(GuardedConnection, protocol)
        connection.payload = payload
        self.enter(connection, BODY if connection.reading_body else HANDLING)
        return self._app_request(message, payload, protocol, writer, task)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        connection = cast(GuardedConnection, handler)
        self._open += 1
        self.enter(connection, IDLE)
        if self._open > self._limits.max_connections:
            self._close(self._longest_waiting(connection), "over_capacity")

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        connection = cast(GuardedConnection, handler)
        self._open -= 1
        if self._in_body(connection):
            self._count("hangup")
        self._forget(connection)
        super().connection_lost(handler, exc)

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp's)
        self._sweeping.cancel()
        self._log_closes()
        await super().shutdown(timeout)

    def _longest_waiting(self, newcomer: GuardedConnection) -> GuardedConnection:
        """The connection to close to make room for ``newcomer``: the one that has waited
        longest for a whole request (idle or reading headers), else the one that has waited
        longest for a body, else ``newcomer`` itself."""
        idle, headers, bodies = (
            next((c for c in since.items() if c[0] is not newcomer), None) for since in self._since
        )
        waiting = [first for first in (idle, headers) if first is not None]
        if waiting:
            return min(waiting, key=lambda first: first[1])[0]
        return bodies[0] if bodies is not None else newcomer

    def _sweep(self) -> None:
        try:
            self._close_expired()
        except Exception:  # a bug here must not stop every later timeout
            if not self._sweep_failed:
                log.exception("the sweep of timed-out connections failed; it goes on")
            self._sweep_failed = True
        finally:
            self._sweeping = self._loop.call_later(SWEEP_EVERY_S, self._sweep)

    def _close_expired(self) -> None:
        now = self._loop.time()
        for phase in _TIMED:
            oldest = now - self._timeouts[phase]
            expired = []
            for connection, entered in self._since[phase].items():
                if entered > oldest:
                    break
                expired.append(connection)
            for connection in expired:
                if phase == BODY and not self._in_body(connection):
                    self.enter(connection, HANDLING)  # the body came in: the app has it
                else:
                    self._close(connection, _TIMEOUT_REASONS[phase])
        if self._unlogged and now - self._logged_at >= LOG_EVERY_S:
            self._log_closes()

    def _close(self, connection: GuardedConnection, reason: str) -> None:
        self._forget(connection)
        self._count(reason)
        connection.force_close()

    def _forget(self, connection: GuardedConnection) -> None:
        if connection.phase <= BODY:
            del self._since[connection.phase][connection]
        connection.phase = CLOSED

    @staticmethod
    def _in_body(connection: GuardedConnection) -> bool:
        return connection.phase == BODY and connection.reading_body

    def _count(self, reason: str) -> None:
        _CLOSED[reason].inc()
        self._unlogged[reason] += 1
        if self._loop.time() - self._logged_at >= LOG_EVERY_S:
            self._log_closes()

    def _log_closes(self) -> None:
        """One line for the closes since the last one (the first close is logged at once)."""
        if not self._unlogged:
            return
        closed = dict(self._unlogged)
        level = logging.WARNING if "over_capacity" in closed else logging.INFO
        limits = self._limits
        log.log(
            level,
            "connections closed: %s (timeouts: headers %g s, body %g s, idle %g s; at most %d "
            "open)",
            ", ".join(f"{reason} {count}" for reason, count in sorted(closed.items())),
            limits.header_timeout_s,
            limits.body_timeout_s,
            limits.idle_timeout_s,
            limits.max_connections,
            extra={"closed": closed},
        )
        self._unlogged.clear()
        self._logged_at = self._loop.time()


class GuardedAppRunner(web.AppRunner):
    """``web.AppRunner`` serving through a ``GuardedServer``."""

    __slots__ = ("_limits",)

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        app_server = await super()._make_server()  # starts the app
        name_the_server()
        return GuardedServer(self._limits, app_server, **self._kwargs)


def name_the_server() -> None:
    """``Server: scanward`` on every answer, at no cost per answer: aiohttp reads its default
    from this module attribute as it prepares each response."""
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` answered as aiohttp does; any other expectation gets a JSON 417
    (aiohttp's answer is text that repeats the header)."""
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        return error_response(ExpectationFailed("only Expect: 100-continue is understood"))
    if request.version == HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the final answer has not begun
    return None
