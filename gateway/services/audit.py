"""The operators' audit log: who saw which file's member data, who changed what. One entry per
file, written in one transaction; the log line carries ids only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from gateway.context import Gateway
from gateway.db import reports
from gateway.db import repositories as repo
from gateway.db.session import unit_of_work
from gateway.logging import get_logger

log = get_logger(__name__)


def record(gw: Gateway, operator: str, action: str, receipt_id: str | None, detail: str) -> None:
    """One entry: an operator's action on one file (or on none)."""
    write(gw, operator, action, [receipt_id], detail)
    log.info("audited", operator=operator, action=action, receipt_id=receipt_id)


def record_many(
    gw: Gateway, operator: str, action: str, receipt_ids: Sequence[str], detail: str
) -> None:
    """One entry per file, in one transaction: who saw which files' member data."""
    write(gw, operator, action, receipt_ids, detail)
    log.info("audited", operator=operator, action=action, receipts=len(receipt_ids))


def record_search(gw: Gateway, operator: str, receipt_ids: Sequence[str], detail: str) -> None:
    """A search by member ID: one entry per file it found (at most a page), so "who looked up
    this member?" is answered by the member's files, without the ID searched in the log; one
    entry without a file when it found none."""
    found = sorted(set(receipt_ids))
    if found:
        record_many(gw, operator, "search_member", found, f"{detail}: {len(found)} files found")
    else:
        record(gw, operator, "search_member", None, f"{detail}: nothing found")


def write(
    gw: Gateway, operator: str, action: str, receipt_ids: Sequence[str | None], detail: str
) -> None:
    """The entries alone, with no log line: the command line's (its output is the terminal's)."""
    with unit_of_work(gw.sessions) as s:
        repo.add_audit_entries(
            s, operator=operator, action=action, receipt_ids=receipt_ids, detail=detail
        )


@dataclass(frozen=True, slots=True)
class AuditPage:
    rows: list[repo.AuditRow]
    more: bool  # an older page follows
    actions: list[str]  # what the filters offer
    partners: list[str]


def entries(
    gw: Gateway,
    f: repo.AuditFilter,
    *,
    partner: str | None = None,
    page: int,
    per_page: int = 100,
) -> AuditPage:
    """The newest first, a page at a time, with each file's name and partner; `partner` by
    name (an unknown name matches nothing, not everything)."""
    with gw.reads() as s:
        if partner:
            found = reports.partner_id(s, partner)
            f = replace(f, partner_id=found or -1, partner=partner if found else None)
        rows = repo.audit_entries(s, f, offset=(page - 1) * per_page, limit=per_page + 1)
        return AuditPage(
            rows=rows[:per_page],
            more=len(rows) > per_page,
            actions=repo.audit_actions(s),
            partners=reports.partner_names(s),
        )
