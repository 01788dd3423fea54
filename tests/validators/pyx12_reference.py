"""pyx12's own verdict per transaction set, run the way `x12valid` runs it (the reference)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pyx12.params
import pyx12.x12n_document

logging.getLogger("pyx12").addHandler(logging.NullHandler())
logging.getLogger("pyx12").propagate = False


def pyx12_set_verdicts(path: Path) -> dict[tuple[str, str, str], str]:
    """{(ISA13, GS06, ST02): IK501} as pyx12 reports it. Raises whatever pyx12 raises."""
    text = path.read_bytes().decode("latin-1")
    out_json, out_999 = io.StringIO(), io.StringIO()
    pyx12.x12n_document.x12n_document(
        pyx12.params.ParamsBase(), io.StringIO(text), out_999, None, fd_json=out_json
    )
    doc = json.loads(out_json.getvalue() or '{"interchanges": []}')
    verdicts: dict[tuple[str, str, str], str] = {}
    for ic in doc["interchanges"]:
        for g in ic["groups"]:
            for t in g["transactions"]:
                key = (
                    str(ic["isa_trn_set_id"]),
                    str(g["gs_control_num"]),
                    str(t["trn_set_control_num"]),
                )
                verdicts[key] = str(t["ack_code"])
    return verdicts
