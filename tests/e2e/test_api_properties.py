"""Property-based API test (issue 10): schemathesis generates requests for every operation in the
server's own ``/openapi.json``, schema-valid and schema-invalid, and sends them to a real
``qwenedit serve --no-worker``. With a valid key no answer may be a 5xx and every answer must be
one the document declares (status, content type, body schema). Without a key every account
route answers 401; with another account's key the first account's tasks and files are 404s.

Deterministic: Hypothesis runs derandomized with no example database, so every run sends the
same requests."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from PIL import Image
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support.images import data_uri, png_bytes
from support.server_process import Server, serve_api_only

pytestmark = pytest.mark.slow

Operation = APIOperation[Any, Any, Any, Any]
GeneratedCase = Case[Any]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics", "/v1/results/{key}")
"""Operations that take no API key (results are signed links; metrics have their own token)."""
OWNER = "alpha"
WITH_KEY_EXAMPLES = 100
"""Per operation and generation mode: 13 operations x 2 modes, fewer where the space is small."""
OTHER_EXAMPLES = 25
"""Per operation without a key or with the other account's key."""


@dataclass(frozen=True)
class Api:
    server: Server
    schema: Any
    owner_key: str
    other_key: str
    owner_ids: dict[str, str]
    """Path parameters naming the owner's task and file."""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with serve_api_only(
        tmp_path_factory.mktemp("properties") / "data", metrics_token="scrape"
    ) as server:
        owner_key = server.new_key(OWNER, credits=100_000)
        other_key = server.new_key("beta", credits=5)
        auth = {"Authorization": f"Bearer {owner_key}"}
        task = requests.post(
            f"{server.base_url}/v1/images/generations",
            json={"prompt": "p", "image_urls": [data_uri(png_bytes(400, 400))]},
            headers=auth,
            timeout=30,
        ).json()
        png = io.BytesIO()
        Image.new("RGB", (400, 400), "red").save(png, format="PNG")
        upload = requests.post(
            f"{server.base_url}/v1/files",
            files={"file": ("in.png", png.getvalue())},
            headers=auth,
            timeout=30,
        ).json()
        yield Api(
            server=server,
            schema=schemathesis.openapi.from_url(f"{server.base_url}/openapi.json"),
            owner_key=owner_key,
            other_key=other_key,
            owner_ids={"task_id": task["id"], "file_id": upload["id"]},
        )


def operations(api: Api) -> list[Operation]:
    found = [result.ok() for result in api.schema.get_all_operations()]
    assert len(found) >= 13
    return found


def explore(
    operation: Operation,
    mode: GenerationMode,
    examples: int,
    check: Callable[[GeneratedCase], None],
    path_parameters: dict[str, str] | None = None,
) -> int:
    """Run ``check`` on up to ``examples`` generated cases; returns how many were generated."""
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
    generated = 0

    @given(case=strategy)
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: GeneratedCase) -> None:
        nonlocal generated
        generated += 1
        check(case)

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid: e.g. no parameters in negative mode
        assert mode is GenerationMode.NEGATIVE, operation.label
    return generated


def validate(case: GeneratedCase, response: Any, headers: dict[str, str]) -> None:
    """The checks, less "no 5xx" for ``/readyz``: with no worker, "not ready" is its 503."""
    checks = CHECKS[1:] if case.operation.path == "/readyz" else CHECKS
    case.validate_response(response, checks=checks, headers=headers)


def test_generated_requests_with_a_key_get_declared_answers_and_never_a_5xx(api: Api) -> None:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {api.owner_key}"}
    statuses: Counter[int] = Counter()
    cases: Counter[str] = Counter()
    server_errors: list[str] = []

    def check(case: GeneratedCase) -> None:
        response = case.call(session=session, headers=headers, timeout=30)
        statuses[response.status_code] += 1
        validate(case, response, headers)
        if case.operation.path != "/readyz" and response.status_code >= 500:
            server_errors.append(case.operation.label)

    for operation in operations(api):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases[operation.label] += explore(operation, mode, WITH_KEY_EXAMPLES, check)
    total = sum(cases.values())
    print(f"\nwith a key: {total} cases, statuses {dict(sorted(statuses.items()))}")
    assert total >= 1000
    assert all(count > 0 for count in cases.values())
    assert server_errors == []


def test_generated_requests_without_a_key_are_401s(api: Api) -> None:
    session = requests.Session()
    statuses: Counter[int] = Counter()

    def check(case: GeneratedCase) -> None:
        response = case.call(session=session, timeout=30)
        statuses[response.status_code] += 1
        validate(case, response, {})
        if case.operation.path not in PUBLIC_PATHS:
            assert response.status_code == 401, response.text
            assert response.json()["error"]["type"] == "authentication_error"

    total = sum(
        explore(operation, GenerationMode.POSITIVE, OTHER_EXAMPLES, check)
        for operation in operations(api)
    )
    print(f"\nwithout a key: {total} cases, statuses {dict(sorted(statuses.items()))}")
    assert total >= 100


def test_another_accounts_key_finds_nothing_of_the_owner(api: Api) -> None:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {api.other_key}"}
    statuses: Counter[int] = Counter()

    def check(case: GeneratedCase) -> None:
        response = case.call(session=session, headers=headers, timeout=30)
        statuses[response.status_code] += 1
        validate(case, response, headers)
        assert response.status_code in (401, 403, 404), response.text
        assert OWNER not in response.text

    total = 0
    for operation in operations(api):
        names = {parameter.name for parameter in operation.path_parameters}
        owned = {name: api.owner_ids[name] for name in names & api.owner_ids.keys()}
        if owned:
            total += explore(operation, GenerationMode.POSITIVE, OTHER_EXAMPLES, check, owned)
    print(f"\nanother account's key: {total} cases, statuses {dict(sorted(statuses.items()))}")
    assert total >= 6  # the owner's ids are the only input: one case per operation
