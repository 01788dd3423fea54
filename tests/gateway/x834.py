"""A small builder of exchange-style 834s for the ledger tests: members in, a whole interchange
out, with QTY totals and SE counts computed (or deliberately overridden)."""

from __future__ import annotations

from dataclasses import dataclass, field

PLAN = "48213VA004000701"


@dataclass
class Cov:
    maintenance: str = "021"
    line: str = "HLT"
    level: str = "FAM"
    plan: str = PLAN
    policy: str = "31200457"
    begin: str | None = "20270101"
    end: str | None = "20271231"
    paid_through: str | None = None  # DTP*543


@dataclass
class Member:
    subscriber_id: str
    member_id: str
    last: str
    first: str
    ssn: str
    maintenance: str = "021"
    reason: str = "EC"
    relationship: str = "18"
    subscriber: bool = True
    birth: str = "19800101"
    gender: str = "F"
    street: str | None = "100 MAIN ST"
    city: str = "RICHMOND"
    zip: str = "23219"
    phone: str = "8045550142"
    eligibility_end: str | None = None
    effective: str | None = None  # 2000 DTP*303 maintenance effective date
    coverages: list[Cov] = field(default_factory=lambda: [Cov()])
    categories: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (REF01, value)
    category_period: str = "20270101-20271231"  # every 2750 loop's DTP*007 (RD8, or a D8 date)
    prior: list[str] = field(default_factory=list)  # 2100B Incorrect Member Name: NM1*70, DMG
    policy: str | None = None  # 2000 REF*1L (CMS sends it on a termination without 2300)

    def segments(self) -> list[str]:
        out = [
            f"INS*{'Y' if self.subscriber else 'N'}*{self.relationship}*{self.maintenance}*"
            f"{self.reason}*A" + ("***AC" if self.subscriber else ""),
            f"REF*0F*{self.subscriber_id}",
            *([f"REF*1L*{self.policy}"] if self.policy else []),
            *([f"REF*17*{self.member_id}"] if self.member_id else []),  # "": no REF*17
        ]
        if self.effective:
            out.append(f"DTP*303*D8*{self.effective}")
        if self.eligibility_end:
            out.append(f"DTP*357*D8*{self.eligibility_end}")
        ident = f"****34*{self.ssn}" if self.ssn else ""  # "": no NM108/NM109
        out.append(f"NM1*IL*1*{self.last}*{self.first}{ident}")
        if self.subscriber:
            out.append(f"PER*IP**HP*{self.phone}")
            if self.street:
                out += [f"N3*{self.street}", f"N4*{self.city}*VA*{self.zip}"]
        out.append(f"DMG*D8*{self.birth}*{self.gender}")
        out += self.prior
        for cov in self.coverages:
            out.append(f"HD*{cov.maintenance}**{cov.line}**{cov.level}")
            if cov.begin:
                out.append(f"DTP*348*D8*{cov.begin}")
            if cov.end:
                out.append(f"DTP*349*D8*{cov.end}")
            if cov.paid_through:
                out.append(f"DTP*543*D8*{cov.paid_through}")
            out += [f"REF*CE*{cov.plan}", *([f"REF*1L*{cov.policy}"] if cov.policy else [])]
        if self.categories:
            out.append("LS*2700")
            for n, (name, (qualifier, value)) in enumerate(self.categories.items(), 1):
                out += [f"LX*{n}", f"N1*75*{name}", f"REF*{qualifier}*{value}"]
                period = self.category_period
                out.append(f"DTP*007*{'RD8' if '-' in period else 'D8'}*{period}")
            out.append("LE*2700")
        return out


def dependent(subscriber_id: str, member_id: str, first: str, ssn: str, **kw: object) -> Member:
    kw.setdefault("relationship", "19")
    return Member(
        subscriber_id=subscriber_id,
        member_id=member_id,
        last=str(kw.pop("last", "QUINTERO")),
        first=first,
        ssn=ssn,
        subscriber=False,
        **kw,  # type: ignore[arg-type]
    )


def interchange(
    members: list[Member],
    *,
    control: int,
    bgn_date: str = "20270101",
    action: str = "2",
    sender: str = "VA0FFM",
    qty: dict[str, int] | None = None,
    master_policy: str | None = None,  # header REF*38
) -> bytes:
    subscribers = sum(m.subscriber for m in members)
    totals = {"TO": len(members), "DT": len(members) - subscribers, "ET": subscribers}
    totals.update(qty or {})
    body = [
        "ST*834*0001*005010X220A1",
        f"BGN*00*REF{control}*{bgn_date}*1200*ET***{action}",
        *([f"REF*38*{master_policy}"] if master_policy else []),
        *(f"QTY*{k}*{v}" for k, v in totals.items()),
        "N1*P5*VIRGINIA HEALTH BENEFIT EXCHANGE*FI*261594837",
        "N1*IN*BLUE RIDGE MUTUAL HEALTH PLAN*FI*541873620",
    ]
    for m in members:
        body += m.segments()
    body.append(f"SE*{len(body) + 1}*0001")
    isa = (
        f"ISA*00*          *00*          *ZZ*{sender:<15}*ZZ*{'EDI834GATEWAY':<15}*"
        f"{bgn_date[2:]}*1200*^*00501*{control:09d}*0*P*:"
    )
    segments = [
        isa,
        f"GS*BE*VA0*EDI834GATEWAY*{bgn_date}*1200*{control}*X*005010X220A1",
        *body,
        f"GE*1*{control}",
        f"IEA*1*{control:09d}",
    ]
    return ("~\n".join(segments) + "~\n").encode()
