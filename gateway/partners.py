"""Trading partners: who may send, as which ISA sender, with which keys."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from gateway.db import repositories as repo
from gateway.db.base import utcnow
from gateway.db.models import Partner
from gateway.errors import GatewayError
from gateway.watch.schedule import ScheduleError, parse_schedule

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ISA_ID = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,14})$")


def new_api_key() -> str:
    return "edi834_" + secrets.token_urlsafe(32)


# Partners' SSH key types (the server also refuses a stored key of another type).
ACCEPTED_KEY_TYPES = frozenset(
    {
        b"ssh-ed25519",
        b"ecdsa-sha2-nistp256",
        b"ecdsa-sha2-nistp384",
        b"ecdsa-sha2-nistp521",
        b"ssh-rsa",
        b"sk-ssh-ed25519@openssh.com",
        b"sk-ecdsa-sha2-nistp256@openssh.com",
    }
)


def accepted_key(line: str) -> bool:
    """Whether a stored OpenSSH public key line is of a type the SFTP server takes at login
    (`gateway.intake.sftp.client_key`'s rule; registration takes only ACCEPTED_KEY_TYPES)."""
    from gateway.intake.sftp import REFUSED_KEY_TYPES  # here: asyncssh, ~0.15 s of a CLI call

    return line.split(maxsplit=1)[0].encode() not in REFUSED_KEY_TYPES


def read_public_keys(paths: Sequence[Path]) -> str:
    """Validate OpenSSH public keys; return them one a line."""
    import asyncssh  # here, not at the top: ~0.15 s of every CLI call that reads no key

    lines = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise GatewayError(f"{path}: not an OpenSSH public key (not text)") from None
        except OSError as exc:
            raise GatewayError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        for line in text.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            try:
                key = asyncssh.import_public_key(line.strip())
            except (asyncssh.KeyImportError, ValueError) as exc:
                raise GatewayError(f"{path}: not an OpenSSH public key ({exc})") from exc
            if key.algorithm not in ACCEPTED_KEY_TYPES:
                raise GatewayError(
                    f"{path}: a {key.algorithm.decode()} key is not accepted (DSA is refused "
                    "by OpenSSH since 7.0); use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or "
                    "ssh-rsa (signing with SHA-2)"
                )
            lines.append(key.export_public_key().decode().strip())
    return "\n".join(lines)


def add_partner(
    session: Session,
    *,
    name: str,
    isa_qualifier: str,
    isa_id: str,
    sftp_keys: str = "",
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    onboarding: bool = False,
) -> tuple[Partner, str]:
    if not NAME.match(name):
        raise GatewayError("name: letters, digits, '.', '_' or '-', up to 64, no leading dot")
    if repo.partner_by_name(session, name) is not None:
        raise GatewayError(f"a partner named {name!r} exists")
    isa_id = _free_identity(session, isa_qualifier, isa_id)
    if webhook_url and not webhook_secret:
        webhook_secret = secrets.token_urlsafe(32)
    key = new_api_key()
    partner = Partner(
        name=name,
        isa_qualifier=isa_qualifier,
        isa_id=isa_id,
        api_key_hash=repo.hash_api_key(key),
        sftp_keys=sftp_keys,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        onboarding=onboarding,
    )
    session.add(partner)
    session.flush()
    return partner, key


def make_sftp_home(sftp_root: Path, name: str) -> None:
    """A partner's SFTP home, inbound/ and outbound/, private (0700)."""
    from gateway.storage import make_private_dirs

    for d in ("inbound", "outbound"):
        make_private_dirs(sftp_root / name / d)


def rotate_key(session: Session, name: str, *, keep_old: dt.timedelta | None = None) -> str:
    """A new API key. The old one stops at once, or — `keep_old` — keeps working that long
    beside the new one, so the partner can switch without an outage (a key kept from an
    earlier rotation is replaced). Disabling the partner refuses both."""
    partner = _get(session, name)
    key = new_api_key()
    if keep_old is not None and keep_old > dt.timedelta(0):
        partner.previous_api_key_hash = partner.api_key_hash
        partner.previous_api_key_until = utcnow() + keep_old
    else:
        partner.previous_api_key_hash = partner.previous_api_key_until = None
    partner.api_key_hash = repo.hash_api_key(key)
    return key


def _free_identity(
    session: Session, isa_qualifier: str, isa_id: str, *, owner: Partner | None = None
) -> str:
    """ISA05/ISA06 checked and free (but for `owner`); the ISA06 without its padding."""
    if not re.fullmatch(r"[0-9A-Z]{2}", isa_qualifier):
        raise GatewayError("isa-qualifier: two characters from the X12 list, e.g. ZZ, 01, 30")
    isa_id = isa_id.rstrip()
    if not ISA_ID.match(isa_id):
        raise GatewayError("isa-id: 1 to 15 printable characters")
    same = repo.partner_by_isa(session, isa_qualifier, isa_id)
    if same is not None and same is not owner:
        # One sender identity, one partner: ISA05/ISA06 is how a file is tied to its sender.
        raise GatewayError(f"partner {same.name!r} already sends as {isa_qualifier}:{isa_id}")
    return isa_id


def set_identity(session: Session, name: str, isa_qualifier: str, isa_id: str) -> Partner:
    """Correct the partner's interchange identity (ISA05/ISA06): its files from now on must
    carry it (TA1 006 otherwise), and its acks are addressed to it. Files already received
    keep what they were judged by; its name, keys and folders are unchanged."""
    partner = _get(session, name)
    partner.isa_id = _free_identity(session, isa_qualifier, isa_id, owner=partner)
    partner.isa_qualifier = isa_qualifier
    return partner


def set_sftp_keys(session: Session, name: str, keys: str) -> Partner:
    """Replace the partner's SFTP public keys (`read_public_keys`; "" removes them all): a
    login with a key no longer listed is refused from then on, its HTTP key untouched."""
    partner = _get(session, name)
    partner.sftp_keys = keys
    return partner


def set_webhook(
    session: Session, name: str, *, url: str | None, secret: str | None = None
) -> Partner:
    """Point the partner's webhook elsewhere (a new secret when none is given) or, with no
    URL, stop it. Deliveries still due go to the new URL; none are made without one."""
    partner = _get(session, name)
    if url is None:
        partner.webhook_url = partner.webhook_secret = None
        return partner
    if not re.match(r"https?://[^\s/]+", url):
        raise GatewayError("webhook URL: http:// or https:// and a host")
    partner.webhook_url = url
    partner.webhook_secret = secret or secrets.token_urlsafe(32)
    return partner


def set_enabled(session: Session, name: str, enabled: bool) -> Partner:
    partner = _get(session, name)
    partner.enabled = enabled
    return partner


def configure_rules(
    session: Session,
    name: str,
    *,
    severities: dict[str, str] | None = None,
    plan_ids: Sequence[str] | None = None,
    combinations: Sequence[str] | None = None,
    send_824: bool | None = None,
    onboarding: bool | None = None,
    ref17: str | None = None,
    plan_year_start: int | None = None,
    effectuation: str | None = None,
    group_plan_years: dict[str, int | None] | None = None,
    keys: str | None = None,
) -> Partner:
    """Set business-rule severities (merged over what is set), the plan list (replaced; an
    empty list turns the check off), the maintenance combinations (replaced; an empty list
    goes back to the CMS FFE table), what REF*17 is (member-id | category), the month its plan
    years begin (the partner's, and a group's: None takes a group's own back), when its additions
    are effectuated (binder | on-add) and whether 824s are sent. Validates every name."""
    from gateway.enrollment.combinations import Combinations
    from gateway.enrollment.rules import (
        COMBINATIONS_KEY,
        EFFECTUATION_KEY,
        GROUP_PLAN_YEARS_KEY,
        KEYS_KEY,
        PLAN_YEAR_KEY,
        REF17_KEY,
        RULES,
        RuleConfig,
        Severity,
    )

    partner = _get(session, name)
    current = RuleConfig.parse(partner.rule_severities, partner.plan_ids)
    merged: dict[str, object] = {k: v.value for k, v in current.severities.items()}
    listed = None if current.combinations.default else current.combinations.lines()
    if combinations is not None:
        try:
            listed = Combinations.parse(combinations).lines() or None
        except ValueError as exc:
            raise GatewayError(f"maintenance combinations: {exc}", 400) from None
    if listed is not None:
        merged[COMBINATIONS_KEY] = listed
    if ref17 not in (None, "member-id", "category"):
        raise GatewayError(f"--ref17 must be member-id or category, not {ref17!r}", 400)
    if ref17 == "category" or (ref17 is None and not current.ref17_member_id):
        merged[REF17_KEY] = "category"
    if plan_year_start is not None and not 1 <= plan_year_start <= 12:
        raise GatewayError(
            f"--plan-year-start must be a month, 1 to 12, not {plan_year_start}", 400
        )
    if keys not in (None, "partner", "by-group"):
        raise GatewayError(f"--keys must be partner or by-group, not {keys!r}", 400)
    if keys == "by-group" or (keys is None and current.keys_by_group):
        merged[KEYS_KEY] = "by-group"
    if effectuation not in (None, "binder", "on-add"):
        raise GatewayError(f"--effectuation must be binder or on-add, not {effectuation!r}", 400)
    if effectuation == "on-add" or (effectuation is None and current.effectuate_on_add):
        merged[EFFECTUATION_KEY] = "on-add"
    start = current.plan_year.start_month if plan_year_start is None else plan_year_start
    if start != 1:
        merged[PLAN_YEAR_KEY] = start
    by_group = {g: p.start_month for g, p in current.group_plan_years.items()}
    for group, month in (group_plan_years or {}).items():
        group = group.strip()
        if not group or len(group) > 80:
            raise GatewayError("a group id (REF*38, or N1*P5 N104) of 1 to 80 characters", 400)
        if month is None:
            by_group.pop(group, None)
        elif not 1 <= month <= 12:
            raise GatewayError(f"the plan year of group {group} must start in month 1 to 12", 400)
        else:
            by_group[group] = month
    if by_group:
        merged[GROUP_PLAN_YEARS_KEY] = dict(sorted(by_group.items()))
    for rule, severity in (severities or {}).items():
        if rule not in RULES:
            raise GatewayError(f"unknown rule {rule!r}; rules: {', '.join(RULES)}", 400)
        try:
            merged[rule] = Severity(severity).value
        except ValueError:
            raise GatewayError(
                f"severity for {rule} must be reject, warn or ignore, not {severity!r}", 400
            ) from None
    partner.rule_severities = json.dumps(merged, sort_keys=True) if merged else ""
    if plan_ids is not None:
        partner.plan_ids = "\n".join(sorted({p.strip() for p in plan_ids if p.strip()}))
    if send_824 is not None:
        partner.send_824 = send_824
    if onboarding is not None:
        partner.onboarding = onboarding
    return partner


def rule_settings(partner: Partner) -> dict[str, object]:
    from gateway.enrollment.rules import RULES, RuleConfig

    config = RuleConfig.parse(partner.rule_severities, partner.plan_ids)
    return {
        "name": partner.name,
        "send_824": partner.send_824,
        "onboarding": partner.onboarding,
        "plan_ids": sorted(config.plan_ids),
        "ref17": "member-id" if config.ref17_member_id else "category",
        "plan_year_start": config.plan_year.start_month,
        "plan_year_start_by_group": {
            g: p.start_month for g, p in sorted(config.group_plan_years.items())
        },
        "effectuation": "on-add" if config.effectuate_on_add else "binder",
        "keys": "by-group" if config.keys_by_group else "partner",
        "maintenance_combinations": {
            "source": "cms-ffe" if config.combinations.default else "partner",
            "combinations": config.combinations.lines(),
        },
        "rules": {
            rule: {"snip": r.snip, "severity": config.severity(rule).value, "title": r.title}
            for rule, r in RULES.items()
        },
    }


def set_schedule(
    session: Session, name: str, schedule: str | None = None, timezone: str | None = None
) -> Partner:
    """When the partner's files are expected (gateway.watch.schedule; "" or "none": not
    watched), in its IANA time zone; None keeps what is set (both None: only look)."""
    partner = _get(session, name)
    tz = timezone or partner.timezone or "UTC"
    text = partner.expected_schedule if schedule is None else schedule
    try:
        parsed = parse_schedule(text, tz)
    except ScheduleError as exc:
        raise GatewayError(str(exc)) from None
    partner.expected_schedule = str(parsed) if parsed else ""
    partner.timezone = tz
    return partner


def _get(session: Session, name: str) -> Partner:
    partner = repo.partner_by_name(session, name)
    if partner is None:
        raise GatewayError(f"no partner named {name!r}", 404)
    return partner
