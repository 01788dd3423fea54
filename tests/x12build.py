"""Test helper: build interchanges from segment strings, filling in SE01/GE01/IEA01."""

from __future__ import annotations

from dataclasses import dataclass, field

RECEIVER = "EDI834GATEWAY"
SENDER = "VA0FFM"

HEADER = [
    "BGN*00*REF12345*20260412*021530*ET***2",
    "N1*P5*ACME EXCHANGE*FI*521874306",
    "N1*IN*BLUE RIDGE HEALTH*FI*540962817",
]
MEMBER = [
    "INS*Y*18*021*EC*A***AC",
    "REF*0F*SUB1000001",
    "REF*17*MEM1000001",
    "DTP*356*D8*20260601",
    "NM1*IL*1*DOE*JANE*A***34*915830264",
    "N3*2318 FLOYD AVE",
    "N4*RICHMOND*VA*23220",
    "DMG*D8*19910323*F",
    "HD*021**HLT**IND",
    "DTP*348*D8*20260601",
    "REF*CE*48213VA004000701",
]


def isa(
    *,
    control: str = "000000101",
    sender: str = SENDER,
    receiver: str = RECEIVER,
    ack: str = "1",
    usage: str = "P",
    version: str = "00501",
    date: str = "260421",
    time: str = "0221",
    sender_qualifier: str = "ZZ",
    receiver_qualifier: str = "ZZ",
    sep: str = "*",
    rep: str = "^",
    comp: str = ":",
) -> str:
    """A fixed-width ISA (106 characters with its terminator appended by the caller)."""
    return sep.join(
        [
            "ISA",
            "00",
            " " * 10,
            "00",
            " " * 10,
            sender_qualifier,
            sender.ljust(15)[:15] if len(sender) <= 15 else sender,
            receiver_qualifier,
            receiver.ljust(15)[:15] if len(receiver) <= 15 else receiver,
            date,
            time,
            rep,
            version,
            control,
            ack,
            usage,
            comp,
        ]
    )


@dataclass
class TS:
    """A transaction set: ST, body, SE (SE01 computed unless given)."""

    body: list[str] = field(default_factory=lambda: [*HEADER, *MEMBER])
    st02: str = "0001"
    st01: str = "834"
    st03: str = "005010X220A1"
    se01: str | None = None
    se02: str | None = None
    trailer: bool = True

    def segments(self) -> list[str]:
        out = [f"ST*{self.st01}*{self.st02}*{self.st03}", *self.body]
        if self.trailer:
            count = self.se01 if self.se01 is not None else str(len(out) + 1)
            out.append(f"SE*{count}*{self.se02 if self.se02 is not None else self.st02}")
        return out


@dataclass
class Group:
    sets: list[TS] = field(default_factory=lambda: [TS()])
    gs06: str = "101"
    gs01: str = "BE"
    gs08: str = "005010X220A1"
    ge01: str | None = None
    ge02: str | None = None
    trailer: bool = True

    def segments(self) -> list[str]:
        out = [f"GS*{self.gs01}*{SENDER}*{RECEIVER}*20260421*0221*{self.gs06}*X*{self.gs08}"]
        for ts in self.sets:
            out.extend(ts.segments())
        if self.trailer:
            count = self.ge01 if self.ge01 is not None else str(len(self.sets))
            out.append(f"GE*{count}*{self.ge02 if self.ge02 is not None else self.gs06}")
        return out


def ack_group(gs06: str = "101") -> Group:
    """A group of acknowledgments (GS01 FA) holding one 999 that accepts a BE group."""
    ack = TS(st01="999", st03="005010X231A1", body=["AK1*BE*101*005010X220A1", "AK9*A*1*1*1"])
    return Group(sets=[ack], gs01="FA", gs08="005010X231A1", gs06=gs06)


def x12(
    *groups: Group,
    isa_kwargs: dict[str, str] | None = None,
    iea01: str | None = None,
    iea02: str | None = None,
    iea: bool = True,
    term: str = "~",
    sep: str = "*",
    line_break: str = "",
) -> bytes:
    """One interchange; `sep` replaces '*' in the body segments."""
    kw = dict(isa_kwargs or {})
    kw.setdefault("sep", sep)
    head = isa(**kw)  # type: ignore[arg-type]
    groups = groups or (Group(),)
    body: list[str] = []
    for g in groups:
        body.extend(g.segments())
    segs = [head] + [s.replace("*", sep) for s in body]
    if iea:
        control = kw.get("control", "000000101")
        segs.append(
            sep.join(["IEA", iea01 if iea01 is not None else str(len(groups)), iea02 or control])
        )
    return "".join(s + term + line_break for s in segs).encode("latin-1")
