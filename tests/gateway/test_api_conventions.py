"""The partner API's HTTP conventions (issue 18): Location on a receipt, RateLimit-* headers, a
throttled partner re-sending what it already sent gets its original receipt, acks with ETag,
Cache-Control, HEAD and 304, and times without a zone refused."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from sqlalchemy import update
from sqlalchemy.orm import Session

from gateway.db.models import IdempotencyKey
from gateway.db.session import make_engine
from gateway.settings import Settings
from tests.conftest import SAMPLES
from tests.gateway.harness import GatewayProcess, submit, wait_final, wait_ledger
from tests.gateway.test_http_e2e import _with_isa13

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
MD_GOOD = (SAMPLES / "good_change_of_address.834").read_bytes()  # sender MD0SBE
PER_MINUTE = 5


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str
) -> Iterator[tuple[GatewayProcess, str]]:
    gw = GatewayProcess(
        data_dir=Path(tmp_path_factory.mktemp("conventions")) / "var",
        database_url=module_database_url,
    )
    key = gw.add_partner("va", "VA0FFM")
    gw.extra_env["MD_KEY"] = gw.add_partner("md", "MD0SBE")
    gw.start(EDI834_SFTP_ENABLED="false", EDI834_RATE_LIMIT_PER_MINUTE=str(PER_MINUTE))
    yield gw, key
    gw.kill()


class TestReceipts:
    def test_location_rate_headers_and_the_original_receipt_when_throttled(
        self, served: tuple[GatewayProcess, str]
    ) -> None:
        gw, key = served
        with gw.client(key) as c:
            first = submit(c, GOOD)
            assert first.status_code == 202
            assert first.headers["location"] == first.json()["status_url"]
            assert first.headers["ratelimit-limit"] == str(PER_MINUTE)
            assert int(first.headers["ratelimit-remaining"]) == PER_MINUTE - 1
            for n in range(PER_MINUTE):  # spend the rest of the quota, and one more
                r = submit(c, _with_isa13(GOOD, 900_000 + n))
            assert r.status_code == 429
            assert int(r.headers["retry-after"]) >= 1
            assert r.headers["ratelimit-remaining"] == "0"
            again = submit(c, GOOD)  # over the rate, but these bytes were received before
            assert again.status_code == 200, again.text
            assert again.json()["id"] == first.json()["id"] and again.json()["duplicate"]
            assert again.headers["location"] == first.headers["location"]


class TestAcks:
    def test_etag_cache_control_head_and_304(self, served: tuple[GatewayProcess, str]) -> None:
        gw, key = served
        with gw.client(key) as c:
            rid = c.get("/v1/interchanges").json()["items"][-1]["id"]
            wait_final(c, rid)
            url = f"/v1/interchanges/{rid}/acks/999"
            got = c.get(url)
            assert got.status_code == 200 and got.content.startswith(b"ISA")
            etag = got.headers["etag"]
            assert etag.startswith('"') and len(etag) == 66
            assert got.headers["cache-control"] == "private, no-cache"
            head = c.head(url)
            assert head.status_code == 200 and head.content == b""
            assert head.headers["etag"] == etag
            cached = c.get(url, headers={"If-None-Match": etag})
            assert cached.status_code == 304 and cached.content == b""
            assert c.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
            # RFC 9110 13.1.2: If-None-Match compares weakly, and * matches any current copy.
            for header in (f"W/{etag}", "*", f'"other", W/{etag}'):
                assert c.get(url, headers={"If-None-Match": header}).status_code == 304, header


class TestHead:
    def test_head_answers_every_json_read_as_its_get_does(
        self, served: tuple[GatewayProcess, str]
    ) -> None:
        """RFC 9110 9.3.2: HEAD wherever GET is answered, with the same header fields and no
        content. FastAPI's routes answered 405 to a HEAD on every JSON read."""
        gw, key = served
        with gw.client(key) as c:
            rid = c.get("/v1/interchanges").json()["items"][-1]["id"]
            wait_final(c, rid)
            for url in (
                "/v1/interchanges",
                f"/v1/interchanges/{rid}",
                f"/v1/interchanges/{rid}/acks",
                "/healthz",
            ):
                got, head = c.get(url), c.head(url)
                assert got.status_code == head.status_code == 200, (url, head.text)
                assert head.content == b"", url
                assert head.headers["content-type"] == got.headers["content-type"], url
                assert head.headers["content-length"] == str(len(got.content)), url
            # Not a way round ownership: another partner's file is 404 to HEAD as to GET.
            with gw.client(gw.extra_env["MD_KEY"]) as other:
                assert other.head(f"/v1/interchanges/{rid}").status_code == 404
                assert other.get(f"/v1/interchanges/{rid}").status_code == 404
            # Without a key, HEAD is refused as GET is.
            with gw.client(None) as anonymous:
                assert anonymous.head("/v1/interchanges").status_code == 401
            # A 405 names HEAD beside GET.
            r = c.delete("/v1/interchanges")
            assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


class TestTimes:
    def test_since_without_a_zone_is_refused(self, served: tuple[GatewayProcess, str]) -> None:
        gw, key = served
        with gw.client(key) as c:
            r = c.get("/v1/interchanges", params={"since": "2026-06-01T00:00:00"})
            assert r.status_code == 422
            assert r.json()["code"] == "invalid_request"
            assert r.json()["errors"][0]["loc"] == ["query", "since"]
            for zoned in ("2026-06-01T00:00:00Z", "2026-06-01T00:00:00-05:00"):
                assert c.get("/v1/interchanges", params={"since": zoned}).status_code == 200
            # A number is no time either: pydantic read it as a Unix time (1970...).
            for number in ("0", "1700000000", "0.5", "1e3"):
                for name in ("since", "until"):
                    r = c.get("/v1/interchanges", params={name: number})
                    assert (r.status_code, r.json()["code"]) == (422, "invalid_request"), number
            r = c.get("/v1/members/0004931685", params={"as_of": "1.4e-45"})
            assert (r.status_code, r.json()["errors"][0]["loc"]) == (422, ["query", "as_of"])


class TestOpenApi:
    def test_operation_ids_are_the_function_names(self, served: tuple[GatewayProcess, str]) -> None:
        gw, _ = served
        doc = httpx.get(f"{gw.url}/openapi.json", timeout=10).json()
        ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
        assert len(ids) == len(set(ids))
        assert {"submit", "list_interchanges", "get_ack", "head_ack"} <= set(ids)
        assert not [i for i in ids if "_v1_" in i or i.endswith(("_get", "_post"))]

    def test_receipt_and_ack_headers_are_declared(self, served: tuple[GatewayProcess, str]) -> None:
        gw, _ = served
        doc = httpx.get(f"{gw.url}/openapi.json", timeout=10).json()
        intake = doc["paths"]["/v1/interchanges"]["post"]["responses"]
        for status in ("200", "202"):
            assert {"Location", "RateLimit-Remaining"} <= set(intake[status]["headers"])
        assert "Retry-After" in intake["429"]["headers"]
        ack = doc["paths"]["/v1/interchanges/{interchange_id}/acks/{kind}"]
        assert set(ack["get"]["responses"]["200"]["headers"]) == {"ETag", "Cache-Control"}
        assert "304" in ack["get"]["responses"] and "head" in ack


class TestIdempotencyKey:
    """Partner md (its own rate budget): a key names one file's bytes for 24 hours."""

    @staticmethod
    def _send(c: httpx.Client, body: bytes, key: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/edi-x12"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return c.post("/v1/interchanges", content=body, headers=headers)

    def test_same_key_same_bytes_other_bytes_and_a_stale_key(
        self, served: tuple[GatewayProcess, str]
    ) -> None:
        gw, _ = served
        first_bytes = _with_isa13(MD_GOOD, 700_001)
        other_bytes = _with_isa13(MD_GOOD, 700_002)
        with gw.client(gw.extra_env["MD_KEY"]) as c:
            first = self._send(c, first_bytes, "key-1")
            assert first.status_code == 202
            again = self._send(c, first_bytes, "key-1")
            assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
            reused = self._send(c, other_bytes, "key-1")
            assert reused.status_code == 422
            assert reused.headers["content-type"] == "application/problem+json"
            assert reused.json()["code"] == "idempotency_key_reused"
            assert len(c.get("/v1/interchanges").json()["items"]) == 1  # nothing recorded
            # the window runs from the key's first use: 25 hours later it is a new key
            settings = Settings(data_dir=gw.data_dir, database_url=gw.database_url)
            engine = make_engine(settings.sqlalchemy_url)
            with Session(engine) as session, session.begin():
                session.execute(
                    update(IdempotencyKey)
                    .where(IdempotencyKey.key == "key-1")
                    .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=25))
                )
            engine.dispose()
            later = self._send(c, other_bytes, "key-1")
            assert later.status_code == 202, later.text
            bad = self._send(c, MD_GOOD, "x" * 256)
            assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")

    def test_closed_value_sets_are_enums(self, served: tuple[GatewayProcess, str]) -> None:
        gw, _ = served
        doc = httpx.get(f"{gw.url}/openapi.json", timeout=10).json()
        schemas = doc["components"]["schemas"]

        def values(model: str, prop: str) -> set[str]:
            schema = schemas[model]["properties"][prop]
            for option in schema.get("anyOf", [schema]):
                if "enum" in option:
                    return set(option["enum"])
            raise AssertionError(f"{model}.{prop} is not an enum: {schema}")

        assert values("InterchangeSummary", "status") >= {"received", "processed", "partial"}
        assert values("InterchangeSummary", "outcome") == {
            "accepted",
            "accepted_with_errors",
            "partially_accepted",
            "rejected",
        }
        assert values("InterchangeSummary", "channel") == {"http", "sftp"}
        assert "rejection" in values("AckOut", "kind")
        assert values("FindingOut", "level") >= {"interchange", "element", "file"}
        assert values("FindingOut", "severity") == {"reject", "warn"}
        assert "not_applied" in values("MemberPage", "ledger_status")
        assert "would_apply" in values("MemberOut", "outcome")
        ack = doc["paths"]["/v1/interchanges/{interchange_id}/acks/{kind}"]["get"]
        (kind,) = [p for p in ack["parameters"] if p["name"] == "kind"]
        assert "999" in kind["schema"]["enum"]

    def test_the_document_is_valid_openapi(self, served: tuple[GatewayProcess, str]) -> None:
        gw, _ = served
        doc = httpx.get(f"{gw.url}/openapi.json", timeout=10).json()
        assert doc["openapi"].startswith("3.1")
        validate(doc)  # openapi-spec-validator: raises on the first error

    def test_the_signed_webhook_is_described(self, served: tuple[GatewayProcess, str]) -> None:
        gw, _ = served
        doc = httpx.get(f"{gw.url}/openapi.json", timeout=10).json()
        hook = doc["webhooks"]["interchange-event"]["post"]
        headers = {p["name"].lower(): p for p in hook["parameters"] if p["in"] == "header"}
        assert set(headers) == {"x-edi834-signature", "x-edi834-signature-256"}
        assert all(h["required"] for h in headers.values())
        body = hook["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/WebhookEvent"}
        fields = set(doc["components"]["schemas"]["WebhookEvent"]["properties"])
        assert fields == {"event", "id", "status", "outcome", "sha256", "at"}

    def test_acks_typed_failures_declared_and_no_impossible_404(
        self, served: tuple[GatewayProcess, str]
    ) -> None:
        gw, _ = served
        doc = httpx.get(f"{gw.url}/openapi.json", timeout=10).json()
        ack = doc["paths"]["/v1/interchanges/{interchange_id}/acks/{kind}"]["get"]
        content = ack["responses"]["200"]["content"]
        assert content["application/edi-x12"]["schema"]["type"] == "string"
        notice = content["application/json"]["schema"]
        assert notice == {"$ref": "#/components/schemas/RejectionNotice"}
        for path, operations in doc["paths"].items():
            for method, operation in operations.items():
                responses = operation["responses"]
                assert "500" in responses, (method, path)
                if "401" in responses:
                    assert "Retry-After" in responses["503"]["headers"], (method, path)
                if "{" not in path:
                    assert "404" not in responses, (method, path)


class TestMemberPages:
    """One pagination style: the members list pages with cursor/next_cursor too."""

    def test_cursor_pages_are_the_after_pages(self, served: tuple[GatewayProcess, str]) -> None:
        gw, _ = served
        family = (SAMPLES / "ledger" / "01_add_family.834").read_bytes()
        family = family.replace(b"*VA0FFM         *", b"*MD0SBE         *")  # partner md
        with gw.client(gw.extra_env["MD_KEY"]) as c:
            rid = submit(c, family).json()["id"]
            wait_ledger(c, rid)
            url = f"/v1/interchanges/{rid}/members"
            by_cursor, cursor = [], None
            while True:
                page = c.get(url, params={"limit": 1, **({"cursor": cursor} if cursor else {})})
                assert page.status_code == 200, page.text
                by_cursor += [m["seq"] for m in page.json()["items"]]
                cursor = page.json()["next_cursor"]
                if cursor is None:
                    break
            everything = c.get(url, params={"limit": 1000}).json()["items"]
            assert by_cursor == [m["seq"] for m in everything] and len(by_cursor) >= 2
            bad = c.get(url, params={"cursor": "bm90LWEtY3Vyc29y"})
            assert (bad.status_code, bad.json()["code"]) == (400, "invalid_cursor")
