"""Pure, deterministic acknowledgement builders: control numbers and the clock are arguments.
TA1 (interchange), 999 (005010X231A1) and 824 (005010X186A1); `reply` wraps each in the ISA/IEA
addressed back to the sender."""

from validators.acks.ta1 import build_ta1
from validators.acks.x824 import BusinessError, SetAdvice, build_824
from validators.acks.x999 import build_999

__all__ = ["BusinessError", "SetAdvice", "build_824", "build_999", "build_ta1"]
