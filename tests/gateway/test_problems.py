"""Every error the partner API answers is an RFC 9457 problem (`application/problem+json`) with a
stable `code` and `type`, and the OpenAPI document says so (issue 18)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SAMPLES
from tests.gateway.harness import GatewayProcess, submit
from tests.gateway.test_http_e2e import _with_isa13

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
PROBLEM = "application/problem+json"
FIELDS = {"type", "title", "status", "detail", "code"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, str]]:
    gw = GatewayProcess(data_dir=Path(tmp_path_factory.mktemp("problems")) / "var")
    key = gw.add_partner("va", "VA0FFM")
    gw.start(
        EDI834_SFTP_ENABLED="false",
        EDI834_WORKER_ENABLED="false",
        EDI834_RATE_LIMIT_PER_MINUTE="3",
        EDI834_MAX_BODY_BYTES=str(len(GOOD) + 10),
    )
    yield gw, key
    gw.kill()


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert set(body) >= FIELDS
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"] == f"urn:edi834-gateway:problem:{code}"
    assert body["title"] and body["detail"]
    return dict(body)


class TestEveryErrorPath:
    def test_unknown_route_and_method(self, served: tuple[GatewayProcess, str]) -> None:
        gw, key = served
        with gw.client(key) as c:
            assert_problem(c.get("/v1/nothing-here"), 404, "not_found")
            r = c.delete("/v1/interchanges")
            assert_problem(r, 405, "method_not_allowed")
            # Two routes serve the path (the list, the upload): Allow names both.
            assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
            r = c.post("/v1/interchanges/R1/acks/999")
            assert_problem(r, 405, "method_not_allowed")
            assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}

    def test_missing_and_unknown_key(self, served: tuple[GatewayProcess, str]) -> None:
        gw, _ = served
        for headers in ({}, {"Authorization": "Bearer nope"}):
            r = httpx.get(f"{gw.url}/v1/interchanges", headers=headers, timeout=10)
            assert_problem(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"

    def test_unknown_interchange_and_ack(self, served: tuple[GatewayProcess, str]) -> None:
        gw, key = served
        with gw.client(key) as c:
            missing = "0" * 32
            assert_problem(c.get(f"/v1/interchanges/{missing}"), 404, "not_found")
            assert_problem(c.get(f"/v1/interchanges/{missing}/acks/999"), 404, "not_found")

    def test_invalid_parameters_name_the_parameter_not_the_value(
        self, served: tuple[GatewayProcess, str]
    ) -> None:
        gw, key = served
        with gw.client(key) as c:
            body = assert_problem(
                c.get("/v1/interchanges", params={"limit": "SMITH-19800101"}),
                422,
                "invalid_request",
            )
            assert body["errors"] and body["errors"][0]["loc"] == ["query", "limit"]  # type: ignore[index]
            assert "SMITH" not in str(body)
            assert_problem(
                c.get("/v1/interchanges", params={"cursor": "garbage"}), 400, "invalid_cursor"
            )

    def test_upload_refusals(self, served: tuple[GatewayProcess, str]) -> None:
        gw, key = served
        with gw.client(key) as c:
            r = c.post(
                "/v1/interchanges", content=GOOD, headers={"Content-Type": "application/pdf"}
            )
            assert_problem(r, 415, "unsupported_media_type")
            assert_problem(submit(c, GOOD + b"\r\n" * 100), 413, "too_large")
            assert_problem(submit(c, b""), 400, "empty_body")
            for n in range(5):  # 3 files a minute (bytes sent before would get their receipt)
                r = submit(c, _with_isa13(GOOD, 800_000 + n))
                if r.status_code == 429:
                    break
            assert_problem(r, 429, "rate_limited")
            assert int(r.headers["retry-after"]) >= 1


class TestOpenApi:
    def test_every_error_response_is_declared_as_a_problem(
        self, served: tuple[GatewayProcess, str]
    ) -> None:
        gw, _ = served
        doc = httpx.get(f"{gw.url}/openapi.json", timeout=10).json()
        errors = 0
        for path, operations in doc["paths"].items():
            for method, operation in operations.items():
                for status, response in operation["responses"].items():
                    if status[0] in "45":
                        errors += 1
                        assert list(response["content"]) == [PROBLEM], (path, method, status)
                        schema = response["content"][PROBLEM]["schema"]
                        assert schema == {"$ref": "#/components/schemas/Problem"}
        assert errors > 20
        schemas = doc["components"]["schemas"]
        assert "HTTPValidationError" not in schemas
        assert set(schemas["Problem"]["required"]) == FIELDS
