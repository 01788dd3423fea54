"""The gate, held over the whole service path: hypothesis builds 834 files (a clean family file
plus envelope, group and set damage, sender and receiver swaps, reused ISA13s, ISA15 P or T),
sends them over HTTP to a running `edi834 serve` with its real worker (SQLite, then
PostgreSQL), and checks, for every file:

- it ends with an answer (a TA1, a 999 or a rejection notice), never `failed`;
- the members that reached the ledger (member events applied or rejected by the business
  rules), the core outbox and the members API are exactly the members of the sets the acks
  accepted, in groups the acks accepted, in interchanges no TA1 rejected, from the
  authenticated sender, with ISA15 P — what the *acks* said, parsed back, is the oracle;
- every other member is listed as not_applied with a reason, and none reaches the core.

And at the end, `edi834 ledger check` finds nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from tests.gateway.harness import GatewayProcess, members_of, submit, wait_ledger
from tests.gateway.x834 import Member, dependent

OURS = "EDI834GATEWAY"
A_ID, B_ID = "GATEA", "GATEB"

SET_DAMAGE = ("none", "none", "missing_n1_in", "bad_date", "se_count", "unknown_segment")
GROUP_DAMAGE = ("none", "none", "ge01", "gs08")


@dataclass
class SetPlan:
    members: int
    damage: str


@dataclass
class GroupPlan:
    sets: list[SetPlan]
    damage: str
    duplicate_gs06: bool = False


@dataclass
class FilePlan:
    usage: str
    sender: str  # whose ISA06 the file carries: "self" or "other"
    receiver: str  # "ours" or "theirs"
    reuse_isa13: bool
    iea_wrong: bool
    groups: list[GroupPlan]
    uploader: str = "a"
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8].upper())


set_plans = st.builds(SetPlan, st.integers(1, 3), st.sampled_from(SET_DAMAGE))
group_plans = st.builds(
    GroupPlan,
    st.lists(set_plans, min_size=1, max_size=2),
    st.sampled_from(GROUP_DAMAGE),
    st.booleans(),
)
file_plans = st.builds(
    FilePlan,
    usage=st.sampled_from(["P", "P", "T"]),
    sender=st.sampled_from(["self", "self", "self", "other"]),
    receiver=st.sampled_from(["ours", "ours", "ours", "theirs"]),
    reuse_isa13=st.sampled_from([False, False, False, True]).map(lambda b: b and bool(_used_isa13)),
    iea_wrong=st.sampled_from([False, False, False, True]),
    groups=st.lists(group_plans, min_size=1, max_size=2),
    uploader=st.sampled_from(["a", "a", "b"]),
)

_control = itertools.count(100_000_001)
_used_isa13: list[str] = []


def _members(tag: str, n: int, family: int) -> list[Member]:
    sub = f"S{tag}{family:03d}"
    head = Member(
        subscriber_id=sub,
        member_id=f"M{tag}{family:03d}0",
        last="GATE",
        first="ADA",
        ssn=f"7{family:02d}44{int(tag[:4], 16) % 10000:04d}",
    )
    deps = [
        dependent(sub, f"M{tag}{family:03d}{k}", f"KID{k}", f"8{family:02d}55{k:04d}")
        for k in range(1, n)
    ]
    return [head, *deps]


def _set_segments(plan: SetPlan, st02: str, tag: str, family: int) -> list[str]:
    members = _members(tag, plan.members, family)
    body = [
        f"ST*834*{st02}*005010X220A1",
        f"BGN*00*REF{tag}{family}*20270101*1200*ET***2",
        f"QTY*TO*{len(members)}",
        f"QTY*ET*{1}",
        f"QTY*DT*{len(members) - 1}",
        "N1*P5*GATE EXCHANGE*FI*261594837",
        "N1*IN*GATE MUTUAL HEALTH PLAN*FI*541873620",
    ]
    for m in members:
        body += m.segments()
    if plan.damage == "missing_n1_in":
        body = [s for s in body if not s.startswith("N1*IN*")]
    elif plan.damage == "bad_date":
        body = [s.replace("DMG*D8*19800101", "DMG*D8*19801399", 1) for s in body]
    elif plan.damage == "unknown_segment":
        body.insert(3, "ZZZ*NOT*A*SEGMENT")
    count = len(body) + 1 + (5 if plan.damage == "se_count" else 0)
    return [*body, f"SE*{count}*{st02}"]


def build(plan: FilePlan) -> tuple[bytes, str, dict[tuple[str, str], int]]:
    """The file, its ISA13, and the member count of each (GS06, ST02)."""
    isa13 = _used_isa13[0] if plan.reuse_isa13 else f"{next(_control):09d}"
    _used_isa13.append(isa13)
    own = A_ID if plan.uploader == "a" else B_ID
    other = B_ID if plan.uploader == "a" else A_ID
    sender = own if plan.sender == "self" else other
    receiver = OURS if plan.receiver == "ours" else "SOMEONEELSE"
    segments = [
        f"ISA*00*          *00*          *ZZ*{sender:<15}*ZZ*{receiver:<15}*"
        f"270101*1200*^*00501*{isa13}*0*{plan.usage}*:"
    ]
    members: dict[tuple[str, str], int] = {}
    family = 0
    gs06s: list[str] = []
    for g, group in enumerate(plan.groups):
        gs06 = gs06s[0] if group.duplicate_gs06 and gs06s else f"{int(isa13) % 100000 * 10 + g}"
        gs06s.append(gs06)
        version = "005010X220" if group.damage == "gs08" else "005010X220A1"
        segments.append(f"GS*BE*{sender}*{receiver}*20270101*1200*{gs06}*X*{version}")
        for s, tset in enumerate(group.sets):
            st02 = f"{g + 1}{s + 1:03d}"
            family += 1
            segments += _set_segments(tset, st02, plan.tag, family)
            members[(gs06, st02)] = members.get((gs06, st02), 0) + tset.members
        ge01 = len(group.sets) + (3 if group.damage == "ge01" else 0)
        segments.append(f"GE*{ge01}*{gs06}")
    iea01 = len(plan.groups) + (1 if plan.iea_wrong else 0)
    segments.append(f"IEA*{iea01}*{isa13}")
    return ("~\n".join(segments) + "~\n").encode(), isa13, members


def _segments(ack: str) -> list[list[str]]:
    return [s.strip().split("*") for s in ack.split("~") if s.strip()]


def admitted_by_acks(ta1: str | None, x999: str | None) -> set[tuple[str, str]] | None:
    """(GS06, ST02) of the sets the acks accepted; None when a TA1 rejected the interchange."""
    if ta1 is not None:
        for seg in _segments(ta1):
            if seg[0] == "TA1" and seg[4] == "R":
                return None
    if x999 is None:
        return set()
    admitted: set[tuple[str, str]] = set()
    gs06 = ""
    group_sets: list[tuple[str, str]] = []
    for seg in _segments(x999):
        if seg[0] == "AK1":
            gs06, group_sets = seg[2], []
        elif seg[0] == "AK2":
            current = (gs06, seg[2])
        elif seg[0] == "IK5" and seg[1] in ("A", "E"):
            group_sets.append(current)
        elif seg[0] == "AK9" and seg[1] in ("A", "E", "P"):
            admitted.update(group_sets)
    return admitted


@dataclass
class Service:
    gw: GatewayProcess
    keys: dict[str, str]
    db_url: str
    outcomes: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def service(module_database_url, tmp_path_factory):
    url = module_database_url
    base = tmp_path_factory.mktemp("gate-pg" if url else "gate-sqlite")
    gw = GatewayProcess(data_dir=base / "var", database_url=url)
    keys = {"a": gw.add_partner("a", A_ID), "b": gw.add_partner("b", B_ID)}
    gw.cli("partner", "rules", "a", "--send-824")
    gw.start(EDI834_LEDGER_ORDER_WINDOW_SECONDS="0.5")
    db_url = url or f"sqlite:///{base / 'var' / 'edi834.sqlite3'}"
    yield Service(gw, keys, db_url)
    gw.kill()


def ack(client: httpx.Client, receipt_id: str, kind: str) -> str | None:
    r = client.get(f"/v1/interchanges/{receipt_id}/acks/{kind}")
    return r.text if r.status_code == 200 else None


def _plan(**kw: object) -> FilePlan:
    """A clean one-group, one-set, two-member production file, with `kw` changed."""
    values: dict[str, object] = {
        "usage": "P",
        "sender": "self",
        "receiver": "ours",
        "reuse_isa13": False,
        "iea_wrong": False,
        "groups": [GroupPlan([SetPlan(2, "none")], "none")],
    }
    values.update(kw)
    return FilePlan(**values)  # type: ignore[arg-type]


# Each way a member can be kept from the ledger, at least once whatever hypothesis draws.
EXAMPLES = [
    _plan(),
    _plan(reuse_isa13=True),  # TA1 025, once an ISA13 has been used
    _plan(receiver="theirs"),  # TA1 008/009
    _plan(sender="other"),  # TA1 006: partner a sends with b's ISA06
    _plan(uploader="b", sender="other"),
    _plan(iea_wrong=True),  # TA1 021
    _plan(usage="T"),  # test data
    _plan(groups=[GroupPlan([SetPlan(1, "none")], "gs08")]),  # AK905 2
    _plan(
        groups=[
            GroupPlan([SetPlan(1, "none")], "none"),
            GroupPlan([SetPlan(2, "none")], "none", True),
        ]
    ),
    _plan(groups=[GroupPlan([SetPlan(2, "none"), SetPlan(1, "missing_n1_in")], "none")]),  # P
    _plan(groups=[GroupPlan([SetPlan(3, "bad_date")], "none")]),  # IK5 R
]


def _examples(test):  # type: ignore[no-untyped-def]
    for plan in reversed(EXAMPLES):
        test = example(plan=plan)(test)
    return test


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(plan=file_plans)
@_examples
def test_only_what_the_gate_admits_reaches_the_ledger_and_the_core(service, plan) -> None:
    event(check_file(service, plan))


def check_file(service: Service, plan: FilePlan) -> str:
    """Send one file and hold the gate's invariant over everything the service did with it."""
    content, _isa13, members = build(plan)
    with service.gw.client(service.keys[plan.uploader]) as c:
        r = submit(c, content, f"gate-{plan.tag}.834")
        assert r.status_code == 202, r.text
        rid = r.json()["id"]
        detail = wait_ledger(c, rid)
        # Every file is answered; nothing in the data makes it fail.
        assert detail["status"] == "processed", detail.get("error")
        ta1, x999 = ack(c, rid, "ta1"), ack(c, rid, "999")
        assert ta1 or x999 or ack(c, rid, "rejection"), "no answer"
        by_acks = admitted_by_acks(ta1, x999)
        production = plan.usage == "P" and plan.sender == "self"
        # Test data or someone else's interchange: never applied, whatever the acks said.
        admitted = (by_acks or set()) if production else set()
        expected_in = sum(members.get(key, 0) for key in admitted)
        listed = members_of(c, rid)

    reached = [m for m in listed if m["outcome"] in ("applied", "rejected")]
    stopped = [m for m in listed if m["outcome"] == "not_applied"]
    assert {(m["gs06"], m["st02"]) for m in reached} <= admitted
    assert len(reached) == expected_in, (admitted, Counter(m["outcome"] for m in listed))
    assert all(m["reason"] for m in stopped)
    assert not any(
        m["outcome"] in ("would_apply", "would_reject") for m in listed
    )  # no partner is onboarding here
    if plan.usage == "T" and plan.sender == "self":  # the acks' accepted sets: test data
        test_only = [m for m in stopped if (m["gs06"], m["st02"]) in (by_acks or set())]
        assert all("ISA15 T" in m["reason"] for m in test_only), test_only
    if any(m["outcome"] == "applied" for m in reached):
        assert detail["ledger_status"] == "applied"
    elif listed and not reached:
        assert detail["ledger_status"] == "not_applied"
    service.outcomes[detail["ledger_status"] or "none"] += 1

    # The database agrees: applied members and core events only from admitted sets.
    engine = create_engine(service.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT e.gs06, e.st02, e.outcome, o.id FROM member_events e "
                    "LEFT JOIN core_outbox o ON o.event_id = e.id WHERE e.receipt_id = :r"
                ),
                {"r": rid},
            ).all()
    finally:
        engine.dispose()
    for gs06, st02, outcome, outbox_id in rows:
        if (gs06, st02) not in admitted:
            assert outcome == "not_applied", (gs06, st02, outcome)
            assert outbox_id is None
        if outbox_id is not None:
            assert outcome == "applied"
    return f"ta1 rejected: {by_acks is None}; usage {plan.usage}; sender {plan.sender}"


def test_ledger_check_finds_nothing_the_gate_let_through(service) -> None:
    """After whatever this service was sent (the property's files, and these), nothing is in
    the ledger that the gate would refuse."""
    for plan in EXAMPLES:
        check_file(service, dataclasses.replace(plan, tag=uuid.uuid4().hex[:8].upper()))
    # Not vacuous: files went both ways.
    assert service.outcomes["applied"] >= 3 and service.outcomes["not_applied"] >= 3, (
        service.outcomes
    )
    done = service.gw.cli("ledger", "check", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""
