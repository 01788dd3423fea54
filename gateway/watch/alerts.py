"""Incidents of gateway.watch as alerts: opened when the report first shows one, closed when it
no longer does, and each state posted once to EDI834_ALERT_URL (not once a poll), signed like
the other webhooks (`X-EDI834-Signature: sha256=<HMAC of the body with alert_secret>`). Several
processes may run this: an incident is one row (its key is unique) and a post is claimed
before it is sent, so each is posted once (again only if the post failed)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence

import httpx

from gateway.context import Gateway
from gateway.db.base import iso_z
from gateway.db.models import Alert
from gateway.db.session import unit_of_work
from gateway.logging import get_logger
from gateway.outbound import post_signed, sign
from gateway.watch import repository as repo
from gateway.watch.report import Incident, WatchReport, watch_report

log = get_logger(__name__)
CLAIM_SECONDS = 60  # a post in flight; a process that died holding it is retried after this
MAX_BACKOFF_SECONDS = 3600


class AlertRefused(Exception):
    pass


def sync_alerts(gw: Gateway, incidents: Sequence[Incident], now: dt.datetime) -> None:
    """Open the incidents not yet open, close the open ones no longer seen."""
    current = {i.key: i for i in incidents}
    with unit_of_work(gw.sessions) as s:
        for alert in repo.open_alerts(s):
            if alert.key not in current:
                alert.closed_at = now
                log.info("alert_closed", key=alert.key, kind=alert.kind)
            else:
                alert.summary = current.pop(alert.key).summary
        for key, incident in current.items():
            existing = repo.alert_by_key(s, key)
            if existing is not None:  # the same incident again (acks late again, …)
                existing.opened_at, existing.closed_at = now, None
                existing.summary, existing.posted_state = incident.summary, ""
                existing.attempts, existing.next_attempt_at = 0, None
            elif not repo.insert_alert(
                s,
                Alert(
                    key=key,
                    kind=incident.kind,
                    partner_id=incident.partner_id,
                    summary=incident.summary,
                    opened_at=now,
                ),
            ):
                continue  # another process opened it
            log.info("alert_opened", key=key, kind=incident.kind)


def _payload(alert: Alert, partner: str | None, state: str) -> bytes:
    return json.dumps(
        {
            "event": f"edi834.alert.{state}",
            "key": alert.key,
            "kind": alert.kind,
            "partner": partner,
            "summary": alert.summary,
            "opened_at": iso_z(alert.opened_at),
            "closed_at": iso_z(alert.closed_at) if alert.closed_at else None,
        },
        sort_keys=True,
    ).encode()


def post_alerts(gw: Gateway, client: httpx.Client, now: dt.datetime) -> int:
    """Post each alert state not yet posted; how many were posted. Without alert_url they
    stay on the overview and in /metrics only."""
    settings = gw.settings
    if not settings.alert_url:
        return 0
    posted = 0
    with unit_of_work(gw.sessions) as s:
        due = [(a.id, a.posted_state) for a in repo.alerts_to_post(s, now)]
    for alert_id, seen in due:
        with unit_of_work(gw.sessions) as s:
            hold = now + dt.timedelta(seconds=CLAIM_SECONDS)
            if not repo.claim_alert_post(s, alert_id, seen, hold, now):
                continue
            alert = s.get(Alert, alert_id)
            if alert is None:
                continue
            state = "closed" if alert.closed_at is not None else "opened"
            if seen == "" and state == "closed":
                alert.posted_state = "closed"  # opened and closed between two polls: a blip
                continue
            partner = repo.partner_name(s, alert.partner_id)
            body = _payload(alert, partner, state)
        error = None
        try:
            post_signed(
                client, settings.alert_url, body, sign(settings.alert_secret, body), AlertRefused
            )
        except (httpx.HTTPError, AlertRefused) as exc:
            error = type(exc).__name__ + (f": {exc}" if isinstance(exc, AlertRefused) else "")
        with unit_of_work(gw.sessions) as s:
            alert = s.get(Alert, alert_id)
            if alert is None:
                continue
            if error is None:
                alert.posted_state = state
                alert.attempts, alert.next_attempt_at, alert.last_error = 0, None, None
                posted += 1
                log.info("alert_posted", key=alert.key, state=state)
            else:
                alert.attempts += 1
                alert.last_error = error
                wait = min(MAX_BACKOFF_SECONDS, 2**alert.attempts * 5)
                alert.next_attempt_at = now + dt.timedelta(seconds=wait)
                log.warning("alert_post_failed", key=alert.key, attempts=alert.attempts)
    return posted


def run_watch(
    gw: Gateway, client: httpx.Client, clock: Callable[[], dt.datetime] | None = None
) -> WatchReport:
    """One round: the report as of now, its incidents opened or closed, their states posted."""
    now = (clock or gw.clock)()
    with gw.reads() as s:
        report = watch_report(s, gw.settings, now)
    sync_alerts(gw, report.incidents(), now)
    post_alerts(gw, client, now)
    return report
