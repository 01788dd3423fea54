"""The `edi834` console script."""

from __future__ import annotations

import argparse
import calendar
import contextlib
import dataclasses
import datetime as dt
import gc
import importlib
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.malloc import limit_arenas

# validators.engine, not validators.interchange: only `validate` needs the validators loaded
# (~0.2 s of CPU a command that does not validate).
from validators.engine import Engine

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from gateway.context import Gateway
    from gateway.settings import Settings


def _party(value: str) -> tuple[str, str]:
    qualifier, sep, ident = value.partition(":")
    if not sep or not qualifier or not ident:
        raise argparse.ArgumentTypeError("expected QUALIFIER:ID, e.g. ZZ:EDI834GATEWAY")
    return qualifier, ident.strip()


def _timestamp(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


# Flags that override EDI834_* settings (None = not given).
SETTING_FLAGS = (
    ("--data-dir", "data_dir", Path),
    ("--database-url", "database_url", str),
    ("--http-host", "http_host", str),
    ("--http-port", "http_port", int),
    ("--sftp-host", "sftp_host", str),
    ("--sftp-port", "sftp_port", int),
    ("--isa-qualifier", "isa_qualifier", str),
    ("--isa-id", "isa_id", str),
    ("--tls-cert", "tls_cert", Path),
    ("--tls-key", "tls_key", Path),
    ("--dashboard-host", "dashboard_host", str),
    ("--dashboard-port", "dashboard_port", int),
    ("--health-port", "health_port", int),
)


def _add_setting_flags(p: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    for flag, dest, kind in SETTING_FLAGS:
        if names is None or dest in names:
            p.add_argument(
                flag,
                dest=f"setting_{dest}",
                type=kind,
                default=None,
                help=f"overrides EDI834_{dest.upper()}",
            )


def _settings(args: argparse.Namespace) -> Any:
    from gateway.settings import Settings

    overrides = {
        k.removeprefix("setting_"): v
        for k, v in vars(args).items()
        if k.startswith("setting_") and v is not None
    }
    return Settings(**overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edi834", description="X12 834 enrollment gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser(
        "validate",
        help="validate 834 files offline and write their TA1/999",
        description="Exit status: 0 all accepted, 1 accepted with errors or partially "
        "accepted, 2 rejected, 3 unusable input (or an --out directory that cannot be written).",
    )
    v.add_argument("files", nargs="+", metavar="FILE", help="834 files; - reads standard input")
    v.add_argument("--out", type=Path, required=True, help="directory for the acknowledgements")
    v.add_argument("--json", action="store_true", help="print a JSON summary per file")
    v.add_argument("--sender", type=_party, help="expected sender QUALIFIER:ID (else TA1 006)")
    v.add_argument("--receiver", type=_party, help="our receiver QUALIFIER:ID (else TA1 009)")
    v.add_argument("--control-number", type=int, default=1, help="first ISA13/GS06 we use")
    v.add_argument("--now", type=_timestamp, help="timestamp for the acks (ISO 8601)")
    v.add_argument("--max-segment-bytes", type=int, default=65_536)
    v.add_argument(
        "--engine",
        choices=[e.value for e in Engine],
        default=Engine.FAST.value,
        help="fast: pyx12's map compiled into tables (default); pyx12: pyx12's own walker, "
        "the reference — the same findings, slower",
    )
    v.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="processes for a large 834 set, checked in blocks of members (fast engine, "
        "files of 4 MB and more); 0: one per CPU (default), 1: this process only",
    )

    s = sub.add_parser(
        "serve", help="run everything in one process: API, dashboard, SFTP server and worker"
    )
    _add_setting_flags(s)
    for role, text in (
        ("api", "run the HTTP API (and the dashboard unless EDI834_DASHBOARD_ENABLED=false)"),
        ("sftp", "run the SFTP server"),
        ("worker", "run the processing worker: validation, acks, ledger, deliveries"),
    ):
        r = sub.add_parser(role, help=text)
        _add_setting_flags(r)
        r.add_argument(
            "--migrate",
            action="store_true",
            help="apply migrations first (default: wait, not ready, until `edi834 db upgrade`)",
        )
        if role == "worker":
            r.add_argument(
                "--concurrency", type=int, default=1, help="files validated at once (threads)"
            )

    db = sub.add_parser("db", help="database maintenance")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="apply the Alembic migrations")
    _add_setting_flags(up, ("data_dir", "database_url"))

    p = sub.add_parser("partner", help="manage trading partners")
    psub = p.add_subparsers(dest="partner_command", required=True)
    add = psub.add_parser("add", help="register a partner; prints its API key once")
    add.add_argument("--name", required=True, help="also the SFTP user name")
    add.add_argument(
        "--isa-qualifier",
        dest="partner_qualifier",
        required=True,
        help="ISA05 the partner sends, e.g. ZZ",
    )
    add.add_argument(
        "--isa-id", dest="partner_isa_id", required=True, help="ISA06 the partner sends"
    )
    _add_key_files(add, "--sftp-key", "OpenSSH public key file (repeatable)")
    add.add_argument("--webhook-url", help="POSTed on acknowledged and failed")
    add.add_argument("--webhook-secret", help="HMAC-SHA256 secret (generated if omitted)")
    add.add_argument(
        "--onboarding",
        action="store_true",
        help="the partner's test interchanges (ISA15 T) get a dry run of the business rules "
        "(never applied, never delivered)",
    )
    add.add_argument("--json", action="store_true")
    _add_setting_flags(add, ("data_dir", "database_url"))
    ls = psub.add_parser("list", help="list partners")
    ls.add_argument("--json", action="store_true")
    _add_setting_flags(ls, ("data_dir", "database_url"))
    for name, text in (
        ("rotate-key", "issue a new API key (the old one stops working, or --keep-old)"),
        ("disable", "refuse the partner's API key and SFTP logins"),
        ("enable", "allow the partner again"),
    ):
        c = psub.add_parser(name, help=text)
        c.add_argument("name")
        c.add_argument("--json", action="store_true")
        if name == "rotate-key":
            c.add_argument(
                "--keep-old",
                type=int,
                default=0,
                metavar="MINUTES",
                help="the old key keeps working this long beside the new one (default 0: it "
                "stops at once)",
            )
        _add_setting_flags(c, ("data_dir", "database_url"))
    ident = psub.add_parser(
        "identity",
        help="correct the partner's interchange identity (ISA05/ISA06) for its files from now "
        "on; its name, keys and folders stay",
    )
    ident.add_argument("name")
    ident.add_argument("--isa-qualifier", required=True, help="ISA05, e.g. ZZ")
    ident.add_argument("--isa-id", required=True, help="ISA06, without its padding")
    ident.add_argument("--json", action="store_true")
    _add_setting_flags(ident, ("data_dir", "database_url"))
    keys = psub.add_parser(
        "sftp-keys",
        help="replace the partner's SFTP public keys (no --key: remove them all; HTTP untouched)",
    )
    keys.add_argument("name")
    _add_key_files(
        keys, "--key", "OpenSSH public key file (repeatable): the partner's keys from now on"
    )
    keys.add_argument("--json", action="store_true")
    _add_setting_flags(keys, ("data_dir", "database_url"))
    hook = psub.add_parser(
        "webhook", help="set the partner's webhook URL and secret, or --remove it"
    )
    hook.add_argument("name")
    target = hook.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="POSTed on acknowledged and failed")
    target.add_argument("--remove", action="store_true", help="no webhook from now on")
    hook.add_argument("--secret", help="HMAC-SHA256 secret (a new one generated if omitted)")
    hook.add_argument("--json", action="store_true")
    _add_setting_flags(hook, ("data_dir", "database_url"))
    rules = psub.add_parser(
        "rules",
        help="show or set the partner's business rules, plan list and 824s",
        description="With no options, shows every rule with its SNIP type and severity.",
    )
    rules.add_argument("name")
    rules.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="RULE=SEVERITY",
        help="reject, warn or ignore (repeatable), e.g. --set repeating-digits=reject",
    )
    rules.add_argument(
        "--plans",
        type=Path,
        metavar="FILE",
        help="the partner's plan ids (REF*CE / HD04), one a line; an empty file turns the "
        "plan check off",
    )
    rules.add_argument(
        "--combinations",
        type=Path,
        metavar="FILE",
        help="the INS03/INS04[/ADDL MAINT REASON] combinations the partner sends, one a line "
        "(* for any value; # comments), e.g. 021/EC, 021/41/PASSIVE, 001/*; replaces the CMS "
        "FFE table for the maintenance-combination rule; an empty file goes back to it",
    )
    rules.add_argument(
        "--ref17",
        choices=["member-id", "category"],
        default=None,
        help="what the partner's 2000 REF*17 is: member-id (an exchange's member id, the "
        "default) or category (the TR3's Client Reporting Category, e.g. an employer's "
        "SALARIED/HOURLY: members are then told apart by REF*0F and who they are)",
    )
    rules.add_argument(
        "--plan-year-start",
        type=int,
        choices=range(1, 13),
        metavar="MONTH",
        default=None,
        help="the month (1-12) the partner's plan years begin: 1, the calendar year (an "
        "exchange's QHP, the default); an employer's group may start in 7 (July to June) or "
        "another month. Names the plan year, bounds end-after-plan-year and where a renewal "
        "ends the year before; set it before the first file",
    )
    rules.add_argument(
        "--group-plan-year",
        action="append",
        default=[],
        metavar="GROUP=MONTH",
        help="a broker's or TPA's employer group whose plan year starts in another month than "
        "--plan-year-start's: GROUP is the set's REF*38 master policy number, else its N1*P5 "
        "sponsor id (N104); MONTH 1-12, or nothing (GROUP=) to take the group's back; repeat "
        "for each group",
    )
    rules.add_argument(
        "--keys",
        choices=["partner", "by-group"],
        default=None,
        help="how members are told apart: partner (REF*0F / REF*17 as sent, the default) or "
        "by-group (a broker's or TPA's: REF*0F qualified by the set's employer group, REF*38 "
        "else N1*P5 N104, as GROUP/REF*0F, so two employers' employee ids never meet); set it "
        "before the first file",
    )
    rules.add_argument(
        "--effectuation",
        choices=["binder", "on-add"],
        default=None,
        help="when the partner's additions are effectuated: binder (an exchange's, the "
        "default: initial until 021/28 or a paid-through date DTP*543) or on-add (an "
        "employer's group, which has no binder payment: in force as sent)",
    )
    rules.add_argument("--send-824", dest="send_824", action="store_true", default=None)
    rules.add_argument("--no-824", dest="send_824", action="store_false")
    rules.add_argument(
        "--onboarding",
        dest="onboarding",
        action="store_true",
        default=None,
        help="dry-run the partner's test interchanges (ISA15 T) through the rules",
    )
    rules.add_argument("--no-onboarding", dest="onboarding", action="store_false")
    rules.add_argument("--json", action="store_true")
    _add_setting_flags(rules, ("data_dir", "database_url"))
    sched = psub.add_parser(
        "schedule",
        help="when the partner's files are expected (missing-file alerts)",
        description="daily HH:MM, weekdays HH:MM, weekly mon HH:MM or monthly 1 HH:MM in the "
        "partner's time zone; 'none' stops watching. With no schedule, shows it.",
    )
    sched.add_argument("name")
    sched.add_argument("schedule", nargs="?", help='e.g. "daily 06:00"')
    sched.add_argument("--tz", help="IANA time zone, e.g. America/New_York (default: kept, UTC)")
    sched.add_argument("--json", action="store_true")
    _add_setting_flags(sched, ("data_dir", "database_url"))
    led = sub.add_parser("ledger", help="show the enrollment ledger")
    lsub = led.add_subparsers(dest="ledger_command", required=True)
    lm = lsub.add_parser("members", help="a partner's members and coverages")
    lm.add_argument("--partner", required=True)
    lm.add_argument("--show-names", action="store_true", help="print names (PHI)")
    lm.add_argument(
        "--as-of",
        type=_iso_date,
        help="show the coverage period in force on this date (YYYY-MM-DD; default: the latest)",
    )
    lm.add_argument("--json", action="store_true")
    _add_by(lm, _LEDGER_BY_HELP)
    _add_setting_flags(lm, ("data_dir", "database_url"))
    lh = lsub.add_parser(
        "history", help="one member's enrollments with every coverage period, and every event"
    )
    lh.add_argument("--partner", required=True)
    lh.add_argument("member", help="member key (REF*17, else the subscriber's REF*0F)")
    lh.add_argument("--json", action="store_true")
    _add_by(lh, _LEDGER_BY_HELP)
    _add_setting_flags(lh, ("data_dir", "database_url"))
    lmo = lsub.add_parser(
        "months",
        help="a policy's premium, APTC and CSR in force each month, prorated by days covered",
    )
    lmo.add_argument("--partner", required=True)
    lmo.add_argument("--policy", required=True, help="the policy id (REF*1L)")
    lmo.add_argument("--from", dest="first", required=True, help="first month, YYYY-MM")
    lmo.add_argument("--to", dest="last", help="last month, YYYY-MM (default: --from)")
    fmt = lmo.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    _add_by(lmo, _LEDGER_BY_HELP)
    _add_setting_flags(lmo, ("data_dir", "database_url"))
    lc = lsub.add_parser(
        "check",
        help="list ledger changes the gate would not have let through (rejected, test-mode or "
        "foreign-sender interchanges applied by an older version); prints nothing when clean",
        description="Exit status: 0 nothing found, 1 found (one line per transaction set).",
    )
    lc.add_argument("--partner", help="only this partner")
    lc.add_argument("--json", action="store_true")
    _add_setting_flags(lc, ("data_dir", "database_url"))
    f = sub.add_parser(
        "file", help="what an operator does to a received file, from a host without a browser"
    )
    fsub = f.add_subparsers(dest="file_command", required=True)
    for name, text in (
        (
            "reprocess",
            "queue processed or failed files again, with new acks (a file whose ledger stage "
            "alone failed: that stage again, under its acks)",
        ),
        ("resolve", "record that a file's problem was dealt with"),
        ("reopen", "a resolved file's problem is open again"),
    ):
        fc = fsub.add_parser(name, help=text)
        fc.add_argument("receipt_ids", nargs="+", metavar="RECEIPT_ID")
        if name == "resolve":
            fc.add_argument("--note", default="", help="what was done (in the audit log)")
        _add_by(fc, "who, for the audit log (default: cli:<the OS user running the command>)")
        _add_setting_flags(fc, ("data_dir", "database_url"))
    core = sub.add_parser(
        "core",
        help="the core system's queue of applied member events: see it, retry its head now, "
        "or skip an event the core refuses for good",
    )
    csub = core.add_subparsers(dest="core_command", required=True)
    cst = csub.add_parser("status", help="events waiting, skipped, and the head of the queue")
    cst.add_argument("--json", action="store_true")
    cre = csub.add_parser(
        "retry", help="try the head of the queue at the next round, not after its backoff"
    )
    csk = csub.add_parser(
        "skip",
        help="mark the head of the queue delivered without delivering it (audited): only once "
        "it has failed; the core system must get that change another way",
    )
    csk.add_argument("outbox_id", type=int, metavar="OUTBOX_ID", help="as `core status` shows")
    csk.add_argument("--reason", required=True, help="why (in the audit log)")
    for c in (cre, csk):
        _add_by(c)
    for c in (cst, cre, csk):
        _add_setting_flags(c, ("data_dir", "database_url"))
    pu = sub.add_parser(
        "purge",
        help="remove the bytes and member data of files received before a retention horizon",
        description="Files received before the horizon and finished with (processed, ledger "
        "stage over, core events and acks delivered) lose their bytes, the member data kept "
        "from them and their 999s and 824s; the receipt, its counts, codes and positions and "
        "the TA1 stay as the audit trail, and the ledger is not touched. Without --apply, "
        "says what it would purge. Exit status: 0 done (or nothing to do), 1 an error.",
    )
    horizon = pu.add_mutually_exclusive_group(required=True)
    horizon.add_argument(
        "--before",
        type=_horizon,
        help="files received before this day (YYYY-MM-DD) or moment (YYYY-MM-DDTHH:MM), UTC; "
        "not in the future",
    )
    horizon.add_argument(
        "--older-than-days", type=int, help="files received more than this many days ago"
    )
    pu.add_argument("--partner", help="only this partner's files")
    pu.add_argument("--apply", action="store_true", help="purge (default: only count)")
    pu.add_argument("--json", action="store_true")
    _add_by(pu)
    _add_setting_flags(pu, ("data_dir", "database_url"))
    o = sub.add_parser("operator", help="manage dashboard operators")
    osub = o.add_subparsers(dest="operator_command", required=True)
    oadd = osub.add_parser("add", help="add an operator; the password is read from stdin")
    oadd.add_argument("username")
    oadd.add_argument("--role", choices=["viewer", "admin"], default="viewer")
    _add_setting_flags(oadd, ("data_dir", "database_url"))
    opw = osub.add_parser(
        "passwd", help="set an operator's password (read from stdin); ends its open sessions"
    )
    opw.add_argument("username")
    _add_setting_flags(opw, ("data_dir", "database_url"))
    ols = osub.add_parser("list", help="list operators")
    _add_setting_flags(ols, ("data_dir", "database_url"))
    for name, text in (
        ("disable", "refuse the operator's logins and end its open sessions"),
        ("enable", "allow the operator again"),
    ):
        oc = osub.add_parser(name, help=text)
        oc.add_argument("username")
        _add_setting_flags(oc, ("data_dir", "database_url"))
    orole = osub.add_parser("role", help="make the operator a viewer or an admin")
    orole.add_argument("username")
    orole.add_argument("role", choices=["viewer", "admin"])
    _add_setting_flags(orole, ("data_dir", "database_url"))
    for changes in (psub, osub):  # who may do what: each change is audited
        for name, c in changes.choices.items():
            if name != "list":
                _add_by(c)
    return parser


def _add_key_files(parser: argparse.ArgumentParser, flag: str, text: str) -> None:
    parser.add_argument(
        flag, type=Path, action="append", default=[], metavar="PUBKEY_FILE", help=text
    )


def _read_password() -> str:
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise SystemExit("passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _group_months(entries: list[str]) -> dict[str, int | None]:
    """--group-plan-year GROUP=MONTH (GROUP= takes the group's own back)."""
    from gateway.errors import GatewayError

    out: dict[str, int | None] = {}
    for entry in entries:
        group, sep, month = entry.rpartition("=")
        if not sep or not group.strip():
            raise GatewayError(f"--group-plan-year {entry!r}: GROUP=MONTH", 400)
        if not month.strip():
            out[group.strip()] = None
        elif month.strip().isdigit():
            out[group.strip()] = int(month)
        else:
            raise GatewayError(f"--group-plan-year {entry!r}: MONTH is 1 to 12", 400)
    return out


def _read_lines(path: Path, flag: str) -> list[str]:
    from gateway.errors import GatewayError

    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise GatewayError(f"{flag} {path}: not a UTF-8 text file", 400) from None
    except OSError as exc:
        raise GatewayError(f"{flag} {path}: {exc.strerror or exc}", 400) from None


def _migrate(settings: Settings, gw: Gateway) -> None:
    """Bring the database to this release's schema, as every command that opens it does, and
    say so on stderr when that changed one in use: a `partner list` or a purge timer run from a
    new release's venv migrated the database under the roles of the old one, silently (found
    upgrading from 47acb51: `edi834 partner list` took an 0023 database to 0024)."""
    from gateway.db.migrate import upgrade_from

    before, head = upgrade_from(gw.engine, settings.sqlalchemy_url)
    if before is not None and before != head:
        sys.stderr.write(
            f"edi834: migrated the database from {before} to {head} first "
            f"({settings.sqlalchemy_url.split('@')[-1]}); roles of an older release still "
            "running on it must be restarted (deploy/README.md, Upgrading)\n"
        )


def _file_command(args: argparse.Namespace) -> int:
    """The dashboard's file actions (gateway.services.interchanges), each audited. A worker
    elsewhere takes a file queued again at its next poll. Exit 1 when any file was not acted
    on (no such file, or not in a state the action applies to)."""

    from gateway.context import Gateway
    from gateway.services import interchanges

    settings = _settings(args)
    gw = Gateway.open(settings)
    _migrate(settings, gw)
    who = _who(args)
    ids: list[str] = list(dict.fromkeys(args.receipt_ids))
    done: list[str] = []
    try:
        for start in range(0, len(ids), interchanges.BULK_LIMIT):
            batch = ids[start : start + interchanges.BULK_LIMIT]
            if args.file_command == "reprocess":
                done += interchanges.reprocess_many(gw, batch, who)
            elif args.file_command == "resolve":
                done += interchanges.resolve_many(gw, batch, who, args.note)
            else:
                done += [rid for rid in batch if interchanges.reopen(gw, rid, who)]
    finally:
        gw.close()
    why = {
        "reprocess": "not processed or failed (received, processing, partial), purged, or no "
        "such file",
        "resolve": "no such file",
        "reopen": "not resolved, or no such file",
    }[args.file_command]
    past = {"reprocess": "queued again", "resolve": "resolved", "reopen": "reopened"}
    for rid in ids:
        if rid in done:
            sys.stdout.write(f"{rid} {past[args.file_command]}\n")
        else:
            sys.stderr.write(f"{rid} left as it is: {why}\n")
    return 0 if len(done) == len(ids) else 1


def _core_command(args: argparse.Namespace) -> int:
    """gateway.services.core: exit 0 done, 1 refused (said why on stderr)."""

    from gateway.context import Gateway
    from gateway.db.base import iso_z
    from gateway.logging import configure_logging
    from gateway.services import core

    settings = _settings(args)
    configure_logging(settings.log_level)  # JSON lines on stderr, as the servers' are
    gw = Gateway.open(settings)
    _migrate(settings, gw)
    who = _who(args)
    try:
        if args.core_command == "status":
            state = core.queue_state(gw)
            head = state.head
            if args.json:
                out = {
                    "pending": state.pending,
                    "skipped": state.skipped,
                    "head": None
                    if head is None
                    else {
                        "outbox_id": head.outbox_id,
                        "event_id": head.event_id,
                        "receipt_id": head.receipt_id,
                        "partner": head.partner,
                        "partner_seq": head.partner_seq,
                        "created_at": iso_z(head.created_at),
                        "attempts": head.attempts,
                        "last_error": head.last_error,
                        "next_attempt_at": iso_z(head.next_attempt_at),
                    },
                }
                sys.stdout.write(json.dumps(out, indent=2) + "\n")
                return 0
            configured = "" if settings.core_configured else " (no core system configured)"
            sys.stdout.write(
                f"{state.pending} events waiting{configured}, {state.skipped} skipped\n"
            )
            if head is not None:
                failed = (
                    f"failed {head.attempts} times, last: {head.last_error}; next try "
                    f"{iso_z(head.next_attempt_at)}"
                    if head.last_error
                    else "not failed"
                )
                sys.stdout.write(
                    f"head: outbox {head.outbox_id} (member event {head.event_id}, partner "
                    f"{core.numbered(head)}, file {head.receipt_id}, written "
                    f"{iso_z(head.created_at)}): {failed}\n"
                )
            return 0
        if args.core_command == "retry":
            head = core.retry_now(gw, who)
            if head is None:
                sys.stdout.write("nothing waiting\n")
            else:
                sys.stdout.write(f"outbox {head.outbox_id} is tried at the next round\n")
            return 0
        try:
            head = core.skip(gw, args.outbox_id, who, args.reason)
        except core.NotSkippable as exc:
            sys.stderr.write(f"outbox {args.outbox_id} left as it is: {exc}\n")
            return 1
        sys.stdout.write(
            f"outbox {head.outbox_id} skipped (member event {head.event_id}, partner "
            f"{core.numbered(head)}, file {head.receipt_id}): the core system "
            "must get it another way\n"
        )
        return 0
    finally:
        gw.close()


def _operator_command(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from gateway.context import Gateway
    from gateway.db.models import Operator
    from gateway.db.session import unit_of_work
    from gateway.errors import GatewayError
    from gateway.operators import add_operator, set_enabled, set_password, set_role

    settings = _settings(args)
    gw = Gateway.open(settings)
    _migrate(settings, gw)
    try:
        with unit_of_work(gw.sessions) as session:
            if args.operator_command == "add":
                add_operator(session, args.username, _read_password(), args.role)
                sys.stdout.write(f"operator {args.username} ({args.role}) added\n")
            elif args.operator_command == "passwd":
                set_password(session, args.username, _read_password())
                sys.stdout.write(f"password of {args.username} changed; its open sessions ended\n")
            elif args.operator_command in ("disable", "enable"):
                set_enabled(session, args.username, args.operator_command == "enable")
                sys.stdout.write(
                    f"operator {args.username} {args.operator_command}d"
                    + (
                        "; its open sessions ended\n"
                        if args.operator_command == "disable"
                        else "\n"
                    )
                )
            elif args.operator_command == "role":
                set_role(session, args.username, args.role)
                sys.stdout.write(f"operator {args.username} is now {args.role}\n")
            else:
                operators = list(session.scalars(select(Operator).order_by(Operator.username)))
                if not operators:
                    sys.stdout.write(
                        "no operators yet; add one with: edi834 operator add NAME --role admin "
                        "(the password is read from stdin)\n"
                    )
                for op in operators:
                    state = "enabled" if op.enabled else "disabled"
                    sys.stdout.write(f"{op.username:<24} {op.role:<7} {state}\n")
    except GatewayError as exc:
        sys.stderr.write(f"edi834 operator {args.operator_command}: {exc.message}\n")
        return 1
    finally:
        gw.close()
    return 0


def _partner_command(args: argparse.Namespace) -> int:
    from gateway.context import Gateway
    from gateway.db.session import unit_of_work
    from gateway.errors import GatewayError
    from gateway.partners import (
        add_partner,
        make_sftp_home,
        read_public_keys,
        rotate_key,
        set_enabled,
    )

    settings = _settings(args)
    gw = Gateway.open(settings)
    _migrate(settings, gw)
    out: dict[str, Any] | list[dict[str, Any]]
    # What is printed waits for the commit: printed inside the transaction, a closed pipe
    # (`partner rules ... | head`) failed the write and rolled the change back.
    said = io.StringIO()
    try:
        with unit_of_work(gw.sessions) as session, contextlib.redirect_stdout(said):
            if args.partner_command == "add":
                partner, key = add_partner(
                    session,
                    name=args.name,
                    isa_qualifier=args.partner_qualifier,
                    isa_id=args.partner_isa_id,
                    sftp_keys=read_public_keys(args.sftp_key),
                    webhook_url=args.webhook_url,
                    webhook_secret=args.webhook_secret,
                    onboarding=args.onboarding,
                )
                make_sftp_home(settings.sftp_root, partner.name)
                out = {"name": partner.name, "api_key": key}
                if not args.json:
                    sys.stdout.write(
                        f"partner {partner.name} ({partner.isa_qualifier}:{partner.isa_id}) "
                        f"added.\nAPI key (shown once, keep it secret): {key}\n"
                        + (
                            f"webhook secret: {partner.webhook_secret}\n"
                            if partner.webhook_url
                            else ""
                        )
                    )
            elif args.partner_command == "rotate-key":
                import datetime as dt

                if args.keep_old < 0:
                    raise GatewayError("--keep-old: minutes, 0 or more", 400)
                key = rotate_key(session, args.name, keep_old=dt.timedelta(minutes=args.keep_old))
                out = {"name": args.name, "api_key": key, "old_key_minutes": args.keep_old}
                if not args.json:
                    sys.stdout.write(
                        (
                            f"the old key works for {args.keep_old} more minutes\n"
                            if args.keep_old
                            else "the old key no longer works\n"
                        )
                        + f"new API key for {args.name} (shown once): {key}\n"
                    )
            elif args.partner_command == "rules":
                from gateway.partners import configure_rules, rule_settings

                severities: dict[str, str] = {}
                for item in args.set:
                    rule, sep, severity = item.partition("=")
                    if not sep:
                        raise GatewayError(f"--set {item!r}: expected RULE=SEVERITY", 400)
                    severities[rule.strip()] = severity.strip()
                partner = configure_rules(
                    session,
                    args.name,
                    severities=severities,
                    plan_ids=_read_lines(args.plans, "--plans") if args.plans else None,
                    combinations=(
                        _read_lines(args.combinations, "--combinations")
                        if args.combinations
                        else None
                    ),
                    send_824=args.send_824,
                    onboarding=args.onboarding,
                    ref17=args.ref17,
                    plan_year_start=args.plan_year_start,
                    effectuation=args.effectuation,
                    group_plan_years=_group_months(args.group_plan_year),
                    keys=args.keys,
                )
                out = rule_settings(partner)
                if not args.json:
                    plans = partner.plan_ids.splitlines()
                    sys.stdout.write(
                        f"{partner.name}: 824 {'on' if partner.send_824 else 'off'}; plan list: "
                        f"{len(plans) if plans else 'not checked'}; onboarding (dry runs of "
                        f"test files): {'on' if partner.onboarding else 'off'}\n"
                    )
                    from gateway.enrollment.rules import RULES, RuleConfig

                    config = RuleConfig.parse(partner.rule_severities, partner.plan_ids)
                    combos = config.combinations
                    sys.stdout.write(
                        "REF*17: "
                        + (
                            "the member's id"
                            if config.ref17_member_id
                            else "a client reporting category (members told apart by REF*0F)"
                        )
                        + "\n"
                    )
                    start = config.plan_year.start_month
                    if config.keys_by_group:
                        sys.stdout.write("members: by employer group (GROUP/REF*0F)\n")
                    sys.stdout.write(
                        "additions: "
                        + (
                            "effectuated as sent (no binder payment)"
                            if config.effectuate_on_add
                            else "initial until effectuated (021/28 or DTP*543)"
                        )
                        + "\n"
                    )
                    sys.stdout.write(
                        "plan year: "
                        + (
                            "the calendar year"
                            if start == 1
                            else f"from {calendar.month_name[start]} 1 (month {start})"
                        )
                        + "\n"
                    )
                    for group, py in sorted(config.group_plan_years.items()):
                        sys.stdout.write(
                            f"  group {group}: from {calendar.month_name[py.start_month]} 1\n"
                        )
                    sys.stdout.write(
                        "maintenance combinations: "
                        + ("CMS FFE outbound table" if combos.default else "this partner's list")
                        + f" ({len(combos.entries)}): {', '.join(combos.lines())}\n"
                    )
                    for rule, r in RULES.items():
                        sys.stdout.write(
                            f"  SNIP {r.snip}  {rule:<30} {config.severity(rule).value:<7} "
                            f"{r.title}\n"
                        )
            elif args.partner_command == "schedule":
                from gateway.partners import set_schedule

                partner = set_schedule(session, args.name, args.schedule, args.tz)
                out = {
                    "name": partner.name,
                    "schedule": partner.expected_schedule,
                    "timezone": partner.timezone,
                }
                if not args.json:
                    sys.stdout.write(
                        f"{partner.name}: "
                        + (
                            f"a file expected {partner.expected_schedule} ({partner.timezone})"
                            if partner.expected_schedule
                            else "no schedule: missing files are not watched"
                        )
                        + "\n"
                    )
            elif args.partner_command == "identity":
                from gateway.partners import set_identity

                partner = set_identity(session, args.name, args.isa_qualifier, args.isa_id)
                out = {
                    "name": partner.name,
                    "isa_qualifier": partner.isa_qualifier,
                    "isa_id": partner.isa_id,
                }
                if not args.json:
                    sys.stdout.write(
                        f"{partner.name}: sends as {partner.isa_qualifier}:{partner.isa_id} "
                        "from now on (files already processed keep their verdicts; those not "
                        "yet processed are judged by this identity)\n"
                    )
            elif args.partner_command == "sftp-keys":
                from gateway.partners import set_sftp_keys

                partner = set_sftp_keys(session, args.name, read_public_keys(args.key))
                count = len([k for k in partner.sftp_keys.splitlines() if k])
                out = {"name": partner.name, "sftp_keys": count}
                if not args.json:
                    sys.stdout.write(
                        f"{partner.name}: {count} SFTP key(s); a login with any other key is "
                        "refused from now on\n"
                    )
            elif args.partner_command == "webhook":
                from gateway.partners import set_webhook

                partner = set_webhook(
                    session, args.name, url=None if args.remove else args.url, secret=args.secret
                )
                out = {"name": partner.name, "webhook_url": partner.webhook_url}
                if partner.webhook_url and not args.secret:
                    out["webhook_secret"] = partner.webhook_secret
                if not args.json:
                    sys.stdout.write(
                        f"{partner.name}: webhook {partner.webhook_url}"
                        + (
                            f"\nwebhook secret (shown once): {partner.webhook_secret}"
                            if not args.secret
                            else ""
                        )
                        + "\n"
                        if partner.webhook_url
                        else f"{partner.name}: no webhook\n"
                    )
            elif args.partner_command in ("disable", "enable"):
                partner = set_enabled(session, args.name, args.partner_command == "enable")
                out = {"name": partner.name, "enabled": partner.enabled}
                if not args.json:
                    sys.stdout.write(f"{partner.name}: {args.partner_command}d\n")
            else:
                from gateway.db.repositories import list_partners
                from gateway.partners import accepted_key

                out = [
                    {
                        "name": p.name,
                        "isa": f"{p.isa_qualifier}:{p.isa_id}",
                        "enabled": p.enabled,
                        "sftp_keys": len([k for k in p.sftp_keys.splitlines() if k]),
                        # Stored by an older version, of a type the server refuses (DSA).
                        "sftp_keys_refused": len(
                            [k for k in p.sftp_keys.splitlines() if k and not accepted_key(k)]
                        ),
                        "webhook": bool(p.webhook_url),
                        "created_at": p.created_at.isoformat(),
                    }
                    for p in list_partners(session)
                ]
                if not args.json:
                    if not out:
                        sys.stdout.write(
                            "no partners yet; add one with: edi834 partner add --name NAME "
                            "--isa-qualifier ZZ --isa-id THEIR_ISA06\n"
                        )
                    for row in out:
                        sys.stdout.write(
                            f"{row['name']:<24} {row['isa']:<20} "
                            f"{'enabled' if row['enabled'] else 'DISABLED':<9} "
                            f"keys={row['sftp_keys']}"
                            + (
                                f" ({row['sftp_keys_refused']} refused: DSA, replace them with "
                                "partner sftp-keys)"
                                if row["sftp_keys_refused"]
                                else ""
                            )
                            + f" webhook={'yes' if row['webhook'] else 'no'}\n"
                        )
    except GatewayError as exc:
        sys.stderr.write(f"edi834 partner {args.partner_command}: {exc.message}\n")
        return 1
    finally:
        gw.close()
    sys.stdout.write(said.getvalue())
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
    return 0


# Never written to the audit log: secrets, key files (their count is), and the plumbing.
_UNAUDITED = frozenset({"command", "partner_command", "operator_command", "json", "by"})
_SECRETS = frozenset({"webhook_secret", "secret"})


def _audit_access_change(args: argparse.Namespace, status: int) -> int:
    """A change to who may send files or read member data — a partner added, its key rotated,
    its SFTP keys or webhook replaced, an operator added, promoted or disabled — is in the audit
    log, as SOC 2 and HITRUST expect of privilege changes: who (`--by`, else cli:<OS user>),
    which command, whom, and its options (secrets only as "set", key files as a count). A
    `list` or a refused command (exit status not 0) writes nothing."""
    kind = args.command
    sub = getattr(args, f"{kind}_command")
    if status != 0 or sub == "list":
        return status
    from gateway.context import Gateway
    from gateway.services import audit

    who = _who(args)
    target = getattr(args, "name", None) or getattr(args, "username", None) or ""
    options = []
    for key, value in sorted(vars(args).items()):
        if key in _UNAUDITED or key in ("name", "username") or key.startswith("setting_"):
            continue
        if value in (None, False, []):
            continue
        if key in _SECRETS:
            options.append(f"{key} set")
        elif isinstance(value, list):
            options.append(f"{key}: {len(value)}")
        else:
            options.append(f"{key}={value}")
    detail = f"{kind} {target}" + (f": {', '.join(options)}" if options else "")
    gw = Gateway.open(_settings(args))
    try:
        audit.write(gw, who[:64], f"cli_{kind}_{sub.replace('-', '_')}"[:32], [None], detail[:1000])
    finally:
        gw.close()
    return status


_BY_HELP = "who, for the audit log (default: cli:<the OS user>)"
_LEDGER_BY_HELP = (
    "who, for the audit log: what is printed is member data, and each run is audited "
    "(default: cli:<the OS user>)"
)


def _add_by(p: argparse.ArgumentParser, text: str = _BY_HELP) -> None:
    p.add_argument("--by", default=None, help=text)


def _who(args: argparse.Namespace) -> str:
    """Who ran the command, for the audit log: `--by`, else cli:<the OS user>."""
    import getpass

    return getattr(args, "by", None) or f"cli:{getpass.getuser()}"


def _audit_ledger_read(gw: Any, args: argparse.Namespace, partner: Any) -> None:
    """A person reading member data from the ledger at a terminal is audited as a dashboard
    view is: who, which command, of which partner (of `history`, the ledger's own id of the
    member, not its key). Written straight to the audit table: no log line on the output."""
    from sqlalchemy import select

    from gateway.db.models import LedgerMember
    from gateway.db.session import unit_of_work
    from gateway.services import audit

    who = _who(args)
    if args.ledger_command == "members":
        detail = f"members of {partner.name}" + (" with names" if args.show_names else "")
    elif args.ledger_command == "months":
        detail = f"a policy's months of {partner.name}"
    else:
        with unit_of_work(gw.sessions) as s:
            found = s.scalar(
                select(LedgerMember.id).where(
                    LedgerMember.partner_id == partner.id, LedgerMember.member_key == args.member
                )
            )
        detail = f"ledger member {found} of {partner.name}" if found else f"of {partner.name}"
    audit.write(gw, who[:64], f"cli_ledger_{args.ledger_command}", [None], detail)


def _ledger_command(args: argparse.Namespace) -> int:
    from gateway.context import Gateway
    from gateway.db import repositories as repo
    from gateway.enrollment import terminal

    settings = _settings(args)
    gw = Gateway.open(settings)
    try:
        with gw.reads() as session:
            if args.ledger_command == "check":
                return _ledger_check(session, args)
            partner = repo.partner_by_name(session, args.partner)
            if partner is None:
                sys.stderr.write(f"edi834 ledger: no partner named {args.partner!r}\n")
                return 1
            _audit_ledger_read(gw, args, partner)
            if args.ledger_command == "members":
                rows = terminal.members_table(
                    session, partner, show_names=args.show_names, as_of=args.as_of
                )
                terminal.write_members(rows, as_json=args.json)
            elif args.ledger_command == "months":
                return _ledger_months(session, partner.id, args)
            else:
                events = terminal.history_table(session, partner, args.member)
                enrollments = terminal.enrollments_table(session, partner, args.member)
                if args.json:
                    sys.stdout.write(
                        json.dumps({"enrollments": enrollments, "events": events}, indent=2) + "\n"
                    )
                elif not enrollments and not events:
                    sys.stderr.write(
                        f"edi834 ledger history: no member {args.member!r} for partner "
                        f"{partner.name} (list them: edi834 ledger members --partner "
                        f"{partner.name})\n"
                    )
                    return 1
                else:
                    terminal.write_enrollments(enrollments)
                    for e in events:
                        sys.stdout.write(
                            f"{e['at']}  {e['ins03']}/{e['ins04']:<3} {e['outcome']:<9} "
                            f"ISA13 {e['isa13']} ST02 {e['st02']} INS at {e['position']}  "
                            f"file {e['receipt']}\n"
                        )
    finally:
        gw.close()
    return 0


def _ledger_months(session: Session, partner_id: int, args: argparse.Namespace) -> int:
    from gateway.enrollment import terminal, views

    try:
        span = views.months(
            views.parse_month(args.first), views.parse_month(args.last or args.first)
        )
    except ValueError as exc:
        sys.stderr.write(f"edi834 ledger months: {exc}\n")
        return 2
    if not views.policy_exists(session, partner_id, args.policy):
        sys.stderr.write(f"edi834 ledger months: no policy {args.policy!r} for this partner\n")
        return 1
    rows = views.policy_months(session, partner_id, args.policy, span)
    totals = views.month_totals(rows)
    if args.json:
        payload = {
            "policy": args.policy,
            "months": [views.month_row_json(r) for r in rows],
            "totals": totals,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    elif args.csv:
        for chunk in views.months_csv(rows):
            sys.stdout.write(chunk)
    else:
        terminal.write_months(rows, totals)
    return 0


def _iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _purge_command(args: argparse.Namespace) -> int:

    from gateway.context import Gateway
    from gateway.db import repositories as repo
    from gateway.db.base import iso_z
    from gateway.services import retention

    if args.older_than_days is not None and args.older_than_days < 1:
        sys.stderr.write("edi834 purge: --older-than-days must be 1 or more\n")
        return 2
    if args.before is not None:
        before = args.before
        if before > dt.datetime.now(dt.UTC):
            sys.stderr.write("edi834 purge: --before is in the future; a horizon is past\n")
            return 2
    else:
        before = dt.datetime.now(dt.UTC) - dt.timedelta(days=args.older_than_days)
    settings = _settings(args)
    gw = Gateway.open(settings)
    _migrate(settings, gw)
    try:
        partner_id = None
        if args.partner:
            with gw.reads() as session:
                partner = repo.partner_by_name(session, args.partner)
            if partner is None:
                sys.stderr.write(f"edi834 purge: no partner named {args.partner!r}\n")
                return 1
            partner_id = partner.id
        report = retention.purge(
            gw,
            before,
            apply=args.apply,
            operator=_who(args),
            partner_id=partner_id,
        )
    finally:
        gw.close()
    if args.json:
        out = {"before": iso_z(before), "applied": args.apply, **dataclasses.asdict(report)}
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    verb = "purged" if args.apply else "would purge"
    sys.stdout.write(
        f"{verb} {_files(report.files)} received before {before:%Y-%m-%d %H:%M} UTC "
        f"({report.bytes:,} bytes, {report.member_events:,} member events)\n"
    )
    if args.apply:
        sys.stdout.write(
            f"removed {_files(report.blobs_removed, 'stored file')} and "
            f"{_files(report.outbound_removed, 'acknowledgement copy', 'copies')} from outbound/\n"
        )
        if report.blobs_left:
            sys.stdout.write(
                f"kept {_files(report.blobs_left, 'stored file')} of purged files: the same "
                "bytes are in a file kept, an SFTP upload held, or were received after the "
                "horizon or "
                "in the last hour (a later purge removes them once that is no longer so)\n"
            )
    if report.unfinished:
        sys.stdout.write(
            f"left {_files(report.unfinished)} before the horizon as they are: not finished "
            "with (not yet processed or applied, a failure not resolved, or a core event or "
            "ack not delivered)\n"
        )
    return 0


def _horizon(text: str) -> dt.datetime:
    """A day (its midnight) or a moment, UTC."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a day or a moment (YYYY-MM-DD or YYYY-MM-DDTHH:MM): {text!r}"
        ) from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _files(n: int, one: str = "file", many: str = "") -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _ledger_check(session: Session, args: argparse.Namespace) -> int:
    from gateway.db import repositories as repo
    from gateway.enrollment.check import find_leaks

    partner_id = None
    if args.partner:
        partner = repo.partner_by_name(session, args.partner)
        if partner is None:
            sys.stderr.write(f"edi834 ledger check: no partner named {args.partner!r}\n")
            return 2
        partner_id = partner.id
    found = 0
    for leak in find_leaks(session, partner_id):
        found += 1
        if args.json:
            sys.stdout.write(json.dumps(dataclasses.asdict(leak)) + "\n")
        else:
            sys.stdout.write(
                f"file {leak.receipt_id} partner {leak.partner} ISA13 {leak.isa13} GS06 "
                f"{leak.gs06} ST02 {leak.st02}: {leak.members_applied} members applied, "
                f"{leak.core_events} core events ({leak.core_delivered} delivered) — "
                f"{leak.reason}\n"
            )
    return 1 if found else 0


def main(argv: list[str] | None = None) -> int:
    limit_arenas()  # before any thread starts (gateway/malloc.py)
    args = build_parser().parse_args(argv)
    try:
        _preload(args.command)
        return _run(args)
    except Exception as exc:  # an expected failure: one line on stderr, not a traceback
        message = _one_line(exc)
        if message is None:
            raise  # a bug: the traceback is what a bug report needs
        sys.stderr.write(f"edi834 {_command_name(args)}: {message}\n")
        return 3 if args.command == "validate" else 1  # validate's 1 means "accepted with errors"


_SERVER = ("gateway.serve", "gateway.intake.sftp")  # the API, the worker and intake with it
_COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "serve": (*_SERVER, "gateway.dashboard.app"),
    "api": (*_SERVER, "gateway.dashboard.app"),
    "sftp": _SERVER,
    "worker": _SERVER,
    "validate": ("gateway.offline",),
}
_DATABASE_MODULES: tuple[str, ...] = ("gateway.context", "gateway.db.migrate")


def _preload(command: str) -> None:
    """Load the modules the command is about to import with the cyclic collector off, then
    freeze them (gc.freeze: later collections never walk them again). Loading creates hundreds
    of thousands of objects none of which is garbage, and each full pass over that growing heap
    was work for nothing: `edi834 serve` took ~20% less CPU to import its modules this way
    (1.37-1.62 s against 1.73-1.76 s on this 2-core machine). The modules are the ones `_run`
    imports anyway; nothing is loaded that the command would not load (the dashboard only
    for the roles that serve it). `serve` freezes again once its apps are built."""
    names = _COMMAND_MODULES.get(command, _DATABASE_MODULES)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in names:
            importlib.import_module(name)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _command_name(args: argparse.Namespace) -> str:
    words = [args.command]
    for attr in (
        "partner_command",
        "operator_command",
        "ledger_command",
        "db_command",
        "file_command",
    ):
        if getattr(args, attr, None):
            words.append(getattr(args, attr))
    return " ".join(words)


def _one_line(exc: Exception) -> str | None:
    """The message for a failure the operator can fix (a missing or unreadable file, a bad
    setting, a database that cannot be opened); None for anything else."""
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, OperationalError

    from gateway.errors import GatewayError

    if isinstance(exc, GatewayError):
        return exc.message
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"EDI834_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
    if isinstance(exc, OperationalError | ArgumentError):
        detail = exc.orig if isinstance(exc, OperationalError) else exc
        return "database: " + str(detail).strip().split("\n")[0]
    return None


def _run(args: argparse.Namespace) -> int:
    if args.command == "validate":
        from gateway.offline import run_validate
        from gateway.parallel import processes_for
        from gateway.spill import spill_to
        from validators.interchange import ValidationOptions

        options = ValidationOptions(
            expected_sender=args.sender,
            expected_receiver=args.receiver,
            max_segment_bytes=args.max_segment_bytes,
            engine=Engine(args.engine),
            spill=spill_to(None),  # the system's temporary directory
        )
        return run_validate(
            args.files,
            args.out,
            as_json=args.json,
            options=options,
            control_number=args.control_number,
            now=args.now or dt.datetime.now(dt.UTC),
            processes=processes_for(args.jobs),
        )
    if args.command == "serve":
        from gateway.serve import serve

        return serve(_settings(args))
    if args.command in ("api", "sftp", "worker"):
        from gateway.serve import serve

        roles = frozenset({"api", "dashboard"} if args.command == "api" else {args.command})
        return serve(
            _settings(args),
            roles,
            concurrency=getattr(args, "concurrency", 1),
            migrate=args.migrate,
        )
    if args.command == "db":
        from gateway.context import Gateway, prepare_data_dir
        from gateway.db.migrate import upgrade_from

        settings = _settings(args)
        prepare_data_dir(settings)
        gw = Gateway.open(settings)
        try:
            before, head = upgrade_from(gw.engine, settings.sqlalchemy_url)
        finally:
            gw.close()
        where = settings.sqlalchemy_url.split("@")[-1]
        if before == head:
            sys.stdout.write(f"database at head ({head}), nothing to migrate: {where}\n")
        else:
            sys.stdout.write(f"database migrated from {before or 'empty'} to {head}: {where}\n")
        return 0
    if args.command == "partner":
        return _audit_access_change(args, _partner_command(args))
    if args.command == "operator":
        return _audit_access_change(args, _operator_command(args))
    if args.command == "file":
        return _file_command(args)
    if args.command == "ledger":
        return _ledger_command(args)
    if args.command == "purge":
        return _purge_command(args)
    if args.command == "core":
        return _core_command(args)
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
