"""A client generated from the gateway's own OpenAPI document by openapi-python-client (issue 18)
uploads a file as application/edi-x12, reads its status with typed enums and fetches its 999 and
its acks list, against a real `edi834 serve`. The one setting a partner needs for the
generator: `content_type_overrides: {application/edi-x12: application/octet-stream}` (it knows
no vendor media types), written here as it would be in their config file."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SAMPLES
from tests.gateway.harness import GatewayProcess

GOOD = (SAMPLES / "good_exchange_new_enrollment.834").read_bytes()
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "edi834_generated_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, str]]:
    tmp = Path(tmp_path_factory.mktemp("generated"))
    gw = GatewayProcess(data_dir=tmp / "var")
    key = gw.add_partner("va", "VA0FFM")
    gw.start(EDI834_SFTP_ENABLED="false")
    document = tmp / "openapi.json"
    document.write_text(httpx.get(f"{gw.url}/openapi.json", timeout=10).text)
    config = tmp / "generator.yaml"
    config.write_text("content_type_overrides:\n  application/edi-x12: application/octet-stream\n")
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(document), "--config", str(config),
         "--output-path", str(tmp / PACKAGE), "--meta", "none"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # Everything of the document is understood: no operation or body left out.
    assert "Warning" not in done.stdout, done.stdout
    sys.path.insert(0, str(tmp))
    try:
        yield gw, key
    finally:
        sys.path.remove(str(tmp))
        for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
            del sys.modules[name]
        gw.kill()


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


class TestGeneratedClient:
    def test_upload_status_and_typed_acks(self, generated: tuple[GatewayProcess, str]) -> None:
        gw, key = generated
        sent: list[str] = []

        def note(request: httpx.Request) -> None:
            sent.append(request.headers.get("content-type", ""))

        client = _module("client").AuthenticatedClient(
            base_url=gw.url, token=key, httpx_args={"event_hooks": {"request": [note]}}
        )
        types = _module("types")
        submit = _module("api.intake.submit")
        receipt = submit.sync(
            client=client, body=types.File(payload=io.BytesIO(GOOD), file_name="enroll.834")
        )
        assert sent == ["application/edi-x12"]
        assert type(receipt).__name__ == "ReceiptOut" and receipt.status.value == "received"

        get_interchange = _module("api.status.get_interchange")
        deadline = time.monotonic() + 60
        while True:
            detail = get_interchange.sync(receipt.id, client=client)
            if detail.status.value == "processed" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert detail.status.value == "processed"
        assert detail.outcome.value == "accepted"  # an enum of the generated client
        assert detail.channel.value == "http"

        kinds = _module("models.get_ack_kind").GetAckKind
        ack = _module("api.status.get_ack").sync(receipt.id, kinds("999"), client=client)
        text = ack.decode() if isinstance(ack, bytes) else ack  # the X12 text, as sent
        assert isinstance(text, str) and text.startswith("ISA") and "AK1*BE" in text
        listed = _module("api.status.list_acks").sync(receipt.id, client=client)
        assert {a.kind.value for a in listed} >= {"999"}

        missing = get_interchange.sync_detailed("0" * 32, client=client)
        assert missing.status_code == 404
        assert type(missing.parsed).__name__ == "Problem"
        assert missing.parsed.code == "not_found"
