"""Pure, deterministic acknowledgement builders: control numbers and the clock are arguments."""

from validators.acks.ta1 import build_ta1
from validators.acks.x999 import build_999

__all__ = ["build_999", "build_ta1"]
