"""`edi834 validate` end to end, through a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest

from gateway.offline import run_validate
from tests.conftest import SAMPLES
from tests.x12build import TS, Group, x12
from validators.interchange import ValidationOptions

NOW = ["--now", "2026-01-02T03:04:00+00:00", "--receiver", "ZZ:EDI834GATEWAY"]


def run(edi834: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(edi834), "validate", *args], input=stdin, capture_output=True, timeout=120, check=False
    )


class TestValidateCommand:
    def test_clean_file_exit_0_and_acks(self, edi834: Path, tmp_path: Path) -> None:
        sample = SAMPLES / "good_exchange_new_enrollment.834"
        proc = run(edi834, str(sample), "--out", str(tmp_path), "--json", *NOW)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["verdict"] == "accepted" and summary["exit_code"] == 0
        assert (tmp_path / "good_exchange_new_enrollment.999").read_bytes() == (
            SAMPLES / "good_exchange_new_enrollment.999"
        ).read_bytes()
        assert (tmp_path / "good_exchange_new_enrollment.ta1").exists()

    @pytest.mark.parametrize(
        ("sample", "code"),
        [
            ("bad_ak901_p_one_of_three.834", 1),
            ("bad_ik403_7_ins03_code.834", 2),
            ("bad_ta1_001_control_mismatch.834", 2),
            ("unusable_binary.834", 3),
        ],
    )
    def test_exit_status(self, edi834: Path, tmp_path: Path, sample: str, code: int) -> None:
        proc = run(edi834, str(SAMPLES / sample), "--out", str(tmp_path), *NOW)
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert proc.stderr == b""

    def test_findings_have_plain_english_and_no_values(self, edi834: Path, tmp_path: Path) -> None:
        proc = run(
            edi834, str(SAMPLES / "bad_ik403_8_dmg02_date.834"), "--out", str(tmp_path), "--json"
        )
        summary = json.loads(proc.stdout)
        findings = [
            f
            for ic in summary["interchanges"]
            for g in ic["groups"]
            for s in g["transaction_sets"]
            for f in s["findings"]
        ]
        assert any(f["family"] == "IK403" and f["code"] == "8" and f["meaning"] for f in findings)
        assert all("bad_value" not in f and "business_unit" not in f for f in findings)

    @pytest.mark.parametrize(
        ("data", "reason"),
        [(b"", "empty"), (bytes(range(256)) * 4, "binary"), (b"ISA*00*    ", "truncated_isa")],
    )
    def test_unusable_input_from_stdin(
        self, edi834: Path, tmp_path: Path, data: bytes, reason: str
    ) -> None:
        proc = run(edi834, "-", "--out", str(tmp_path), "--json", stdin=data)
        assert proc.returncode == 3
        assert json.loads(proc.stdout)["unusable"]["reason"] == reason
        rejected = json.loads((tmp_path / "stdin.rejected.json").read_text())
        assert rejected["reason"] == reason and rejected["message"]

    def test_truncated_file_is_rejected_with_ta1_023(self, edi834: Path, tmp_path: Path) -> None:
        data = x12(Group(sets=[TS()]))
        path = tmp_path / "cut.834"
        path.write_bytes(data[: len(data) // 2])
        proc = run(edi834, str(path), "--out", str(tmp_path / "out"), "--json")
        assert proc.returncode == 2
        ta1 = (tmp_path / "out" / "cut.ta1").read_text()
        assert "*R*023~" in ta1

    def test_several_files_worst_exit_and_one_line_each(self, edi834: Path, tmp_path: Path) -> None:
        files = [str(SAMPLES / "good_cancel.834"), str(SAMPLES / "unusable_empty.834")]
        proc = run(edi834, *files, "--out", str(tmp_path), "--json")
        lines = proc.stdout.decode().splitlines()
        assert [json.loads(x)["verdict"] for x in lines] == ["accepted", "unusable"]
        assert proc.returncode == 3

    def test_missing_file_is_reported_not_a_traceback(self, edi834: Path, tmp_path: Path) -> None:
        proc = run(edi834, str(tmp_path / "nope.834"), "--out", str(tmp_path), "--json")
        assert proc.returncode == 3
        assert b"Traceback" not in proc.stderr
        assert json.loads(proc.stdout)["unusable"]["reason"] == "unreadable"


class TestEngines:
    """`--engine fast` (the default) and `--engine pyx12` write byte-identical acknowledgements."""

    @pytest.mark.parametrize(
        "sample",
        [
            "bad_ik403_8_dmg02_date.834",
            "bad_ik304_4_2300_over_99.834",
            "good_large_200_members.834",
        ],
    )
    def test_same_acks_either_engine(self, edi834: Path, tmp_path: Path, sample: str) -> None:
        outs = {}
        for engine in ("fast", "pyx12", None):
            out = tmp_path / (engine or "default")
            flags = ["--engine", engine] if engine else []
            proc = run(edi834, str(SAMPLES / sample), "--out", str(out), "--json", *NOW, *flags)
            assert proc.returncode in (0, 1, 2), proc.stderr
            stem = Path(sample).stem
            outs[engine] = (
                (out / f"{stem}.999").read_bytes(),
                json.loads(proc.stdout)["interchanges"],
            )
        assert outs["fast"] == outs["pyx12"] == outs[None]

    def test_unknown_engine_is_a_usage_error(self, edi834: Path, tmp_path: Path) -> None:
        sample = SAMPLES / "good_exchange_new_enrollment.834"
        proc = run(edi834, str(sample), "--out", str(tmp_path), "--engine", "turbo")
        assert proc.returncode == 2 and b"invalid choice" in proc.stderr


class TestPrivateOutput:
    """The acks hold member data — a 999's IK404 quotes the bad value (a birth date) and its CTX
    a subscriber number — so what `--out` gets is the gateway user's alone, as the data
    directory is: folders 0700, files 0600, whatever the umask."""

    def test_acks_are_private_under_umask_022(self, tmp_path: Path) -> None:
        junk = tmp_path / "junk.834"
        junk.write_bytes(b"not an interchange")
        out = tmp_path / "acks" / "today"
        old = os.umask(0o022)
        try:
            run_validate(
                [str(SAMPLES / "bad_ik403_8_dmg02_date.834"), str(junk)],
                out,
                as_json=True,
                options=ValidationOptions(expected_receiver=("ZZ", "EDI834GATEWAY")),
                control_number=1,
                now=dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC),
            )
        finally:
            os.umask(old)
        written = sorted(p.name for p in out.iterdir())
        assert written == [
            "bad_ik403_8_dmg02_date.999",
            "bad_ik403_8_dmg02_date.ta1",
            "junk.rejected.json",
        ]
        assert b"IK4*2*1251*8*" in (out / "bad_ik403_8_dmg02_date.999").read_bytes()
        for d in (tmp_path / "acks", out):
            assert d.stat().st_mode & 0o777 == 0o700, d
        for name in written:
            assert (out / name).stat().st_mode & 0o777 == 0o600, name
