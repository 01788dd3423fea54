"""A file whose worker died mid-work is taken over when its lease runs out — and counted
(`edi834_lease_takeovers_total{stage}`), so an operator sees workers dying or stalling: for the
validation queue and for the ledger stage, and never for an ordinary claim."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.base import utcnow
from gateway.db.models import Receipt
from gateway.db.session import unit_of_work
from gateway.enrollment import repository as ledger_repo
from gateway.metrics import LEASE_TAKEOVERS
from gateway.partners import add_partner
from gateway.worker.run import Worker
from tests.gateway.harness import in_process_gateway
from tests.gateway.test_ledger import family
from tests.gateway.test_worker import _receipt
from tests.gateway.x834 import interchange


@pytest.fixture
def gw(tmp_path):
    yield from in_process_gateway(tmp_path / "var")


def takeovers(stage: str) -> float:
    return LEASE_TAKEOVERS.labels(stage=stage)._value.get()


def test_takeovers_are_counted_per_stage(gw: Gateway) -> None:
    with unit_of_work(gw.sessions) as s:
        partner, _ = add_partner(s, name="va", isa_qualifier="ZZ", isa_id="VA0FFM")
        partner_id = partner.id
    rid = _receipt(gw, partner_id, interchange(family(), control=1))
    validate, ledger = takeovers("validate"), takeovers("ledger")

    with unit_of_work(gw.sessions) as s:  # worker A claims it, then dies
        assert repo.claim_next(s, worker_id="A", lease_seconds=30).id == rid
    assert takeovers("validate") == validate  # an ordinary claim is no takeover
    later = utcnow() + dt.timedelta(seconds=31)
    with unit_of_work(gw.sessions) as s:  # B finds the lease run out
        assert repo.claim_next(s, worker_id="B", lease_seconds=30, now=later).id == rid
    assert takeovers("validate") == validate + 1

    with unit_of_work(gw.sessions) as s:  # let B's lease go, then validate it for real
        s.get_one(Receipt, rid).lease_expires_at = utcnow() - dt.timedelta(seconds=1)
    assert Worker(gw).run_once()
    with unit_of_work(gw.sessions) as s:  # the ledger stage: A claims, dies; B takes over
        assert ledger_repo.claim_ledger_work(s, worker_id="A", lease_seconds=30) == rid
    assert takeovers("ledger") == ledger
    with unit_of_work(gw.sessions) as s:
        claimed = ledger_repo.claim_ledger_work(s, worker_id="B", lease_seconds=30, now=later)
        assert claimed == rid
    assert takeovers("ledger") == ledger + 1
