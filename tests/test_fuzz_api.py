"""Schemathesis fuzzes the running API from its own OpenAPI document (``GET /openapi.json``).

The app runs on a real loopback port with the session's Redis and a migrated ClickHouse
database, once with the admin token (every operation's handler is reached) and once without
(the public ones are, the others must answer 401). Each operation gets its documented examples,
Schemathesis' coverage cases and generated cases, valid and invalid: every answer must be no
5xx, of a documented status, content type, headers and schema, an invalid input must be
refused with a 4xx, and an operation that needs a token must refuse a request without one.
Derandomized, so a run repeats; the number of cases is printed and recorded as a property.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import hypothesis
import orjson
import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import NO_FEEDBACK
from schemathesis.generation.overrides import Override
from schemathesis.specs.openapi import checks as openapi_checks

from ingest.config import Settings
from ingest.http.api.scans import NDJSON_TYPES
from ingest.ops.local_services import free_port
from ingest.ops.server import serving
from tests.helpers import ADMIN

pytestmark = [pytest.mark.redis, pytest.mark.clickhouse, pytest.mark.slow]

_NDJSON_TYPES = [media_type for media_type in NDJSON_TYPES if media_type]
_CHECKS = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
]
_CONFIG = schemathesis.Config.from_dict(
    {
        # the API ignores query parameters it does not know, as HTTP APIs do: no negative case
        "generation": {"allow-extra-parameters": False},
        # an invalid input may be refused with any 4xx (a body too large for the endpoint: 413)
        "checks": {"negative_data_rejection": {"expected-statuses": ["4XX"]}},
    }
)
ADMIN_EXAMPLES = 12
ANONYMOUS_EXAMPLES = 4


@schemathesis.serializer(*_NDJSON_TYPES)
def _ndjson_lines(context: schemathesis.SerializationContext, value: Any) -> bytes:
    """A list becomes one JSON value a line; anything else (negative cases) a single line.
    ``json`` rather than orjson: generated integers may exceed 64 bits."""
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode()


@schemathesis.deserializer(*_NDJSON_TYPES)
def _ndjson_values(context: schemathesis.DeserializationContext, response: Any) -> list[Any]:
    return [orjson.loads(line) for line in response.content.splitlines() if line.strip()]


@pytest.fixture
def live_api(settings: Settings, database: str) -> Iterator[str]:
    """The app served as ``scanward serve`` serves it (its connection guard included) on a free
    loopback port, by its own event loop in a thread: its URL."""
    port = free_port()
    served = serving(
        dataclasses.replace(settings, clickhouse_url=database, host="127.0.0.1", port=port)
    )
    loop = asyncio.new_event_loop()
    loop.run_until_complete(served.__aenter__())
    thread = threading.Thread(target=loop.run_forever, name="fuzzed-api", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    stop = served.__aexit__(None, None, None)
    asyncio.run_coroutine_threadsafe(stop, loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=30)
    loop.close()


class FuzzRun:
    """Every operation of ``schema`` against ``base_url``, in Schemathesis' phases: its
    documented examples; the coverage cases (each constraint's boundaries, just inside and just
    outside, missing and wrong-typed fields); ``examples`` valid and ``examples`` invalid
    generated cases. Keeps the count of cases by phase and status class, and the failures
    (each with its case, shrunk where generated), so that one run shows them all."""

    def __init__(self, schema: Any, base_url: str, headers: dict[str, str]) -> None:
        self.schema, self.base_url, self.headers = schema, base_url, headers
        self.phases: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.failures: list[str] = []
        self._session = requests.Session()

    def run(self, examples: int) -> None:
        with self._session:
            for result in self.schema.get_all_operations():
                operation = result.ok()
                for strategy in operation.get_strategies_from_examples():
                    self._phase("examples", operation, partial(_given, strategy, 1, self._check))
                self._phase("coverage", operation, partial(self._cover, operation))
                for mode in _modes(operation):
                    self._phase(
                        "generated", operation, partial(self._generate, operation, mode, examples)
                    )

    def report(self, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
        cases = self.statuses.total()
        request.node.user_properties.append(("fuzz_cases", cases))
        phases = [(name, self.phases[name]) for name in ("examples", "coverage", "generated")]
        counts = [*phases, *sorted(self.statuses.items())]
        with capsys.disabled():
            print(
                f"\n{request.node.name}: {cases} fuzz cases ("
                + ", ".join(f"{name} {n}" for name, n in counts)
                + ")"
            )

    def _phase(self, name: str, operation: Any, run: Callable[[], None]) -> None:
        before = self.statuses.total()
        try:
            run()
        except (Exception, BaseExceptionGroup) as failure:
            self.failures.append(f"{operation.label} ({name}): {failure}")
        self.phases[name] += self.statuses.total() - before

    def _cover(self, operation: Any) -> None:
        """The coverage cases, until the first that fails."""
        cases = CoverageGenerator(
            operation=operation,
            generation_modes=list(GenerationMode),
            generation_config=self.schema.config.generation,
            auth_storage=None,
            override=Override(),
            feedback=NO_FEEDBACK,
        )
        for case in cases:
            self._check(case)

    def _generate(self, operation: Any, mode: GenerationMode, examples: int) -> None:
        try:
            _given(operation.as_strategy(generation_mode=mode), examples, self._check)
        except hypothesis.errors.Unsatisfiable:
            if mode is not GenerationMode.NEGATIVE:  # else only free strings: nothing to negate
                raise

    def _check(self, case: Any) -> None:
        excluded = []
        if case.path == "/v1/scans/bulk":  # each line has its answer in a 200
            excluded.append(openapi_checks.negative_data_rejection)
        try:
            response = case.call(self.base_url, self._session, self.headers, timeout=30)
        except requests.RequestException:
            self.statuses["no answer"] += 1
            raise
        self.statuses[f"{response.status_code // 100}xx"] += 1
        case.validate_response(
            response,
            checks=_CHECKS,
            excluded_checks=excluded,
            headers=self.headers,
            transport_kwargs={"base_url": self.base_url, "session": self._session},
        )


def _given(strategy: Any, examples: int, test: Callable[[Any], None]) -> None:
    hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )(hypothesis.given(case=strategy)(test))()


def _modes(operation: Any) -> list[GenerationMode]:
    """Valid inputs, and invalid ones where the operation takes any input."""
    takes_input = operation.path_parameters or operation.query or operation.body
    return [GenerationMode.POSITIVE, *([GenerationMode.NEGATIVE] if takes_input else [])]


@pytest.mark.parametrize(
    ("headers", "examples"),
    [(ADMIN, ADMIN_EXAMPLES), ({}, ANONYMOUS_EXAMPLES)],
    ids=["admin_token", "no_token"],
)
def test_fuzz(
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    live_api: str,
    headers: dict[str, str],
    examples: int,
) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api}/openapi.json", config=_CONFIG)
    fuzz = FuzzRun(schema, live_api, headers)
    fuzz.run(examples)
    fuzz.report(request, capsys)
    assert not fuzz.failures, "\n\n".join(fuzz.failures)
