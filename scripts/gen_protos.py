"""Generate Python code and .pyi stubs from protos/ into services/common/proto/.

grpcio-tools emits absolute imports that follow the proto package (``from sluice.v1 import
data_pb2``). The generated modules live inside ``services.common.proto`` instead, so the imports
are rewritten here; ``tests/unit/test_protos_fresh.py`` runs this into a temporary directory and
fails when the committed files differ.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "services" / "common" / "proto"
IMPORT_RE = re.compile(r"^from sluice\.v1 import", re.MULTILINE)
TARGET_PACKAGE = "services.common.proto.sluice.v1"


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto under protos/ into ``out_dir``; return the files written."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    # protoc finds the mypy plugins on PATH; they sit next to this interpreter.
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        written: list[Path] = []
        for src in sorted(Path(tmp).rglob("*.py*")):
            rel = src.relative_to(tmp)
            dest = out_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            text = IMPORT_RE.sub(f"from {TARGET_PACKAGE} import", src.read_text())
            dest.write_text(text)
            written.append(dest)
    for pkg in {out_dir, *(p.parent for p in written)}:
        init = pkg / "__init__.py"
        while pkg != out_dir.parent:
            init = pkg / "__init__.py"
            if not init.exists():
                init.write_text("")
            pkg = pkg.parent
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = parser.parse_args(argv)
    if ns.out == DEFAULT_OUT and DEFAULT_OUT.exists():
        shutil.rmtree(DEFAULT_OUT)
    ns.out.mkdir(parents=True, exist_ok=True)
    for path in generate(ns.out):
        print(path.relative_to(ns.out.parent) if ns.out == DEFAULT_OUT else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
