"""The committed generated code must match what `make protos` produces from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "services" / "common" / "proto"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "proto"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    fresh = {p.relative_to(out): p.read_text() for p in out.rglob("*.py*") if p.is_file()}
    committed = {
        p.relative_to(GENERATED): p.read_text() for p in GENERATED.rglob("*.py*") if p.is_file()
    }
    stale = sorted(str(k) for k in fresh if committed.get(k) != fresh[k])
    extra = sorted(str(k) for k in committed if k not in fresh)
    assert not stale and not extra, f"run `make protos`: stale {stale}, unexpected {extra}"
