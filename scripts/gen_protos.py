"""Regenerate the gRPC/protobuf stubs in client/hoard/v1 from protos/.

    python scripts/gen_protos.py            # rewrite the committed stubs
    python scripts/gen_protos.py --check    # exit 1 if they differ from protos/

The stubs are committed so that the SDK installs without grpcio-tools; CI runs
the --check form so they can never drift from the .proto files.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "client"
PACKAGE = Path("hoard") / "v1"


def generate(out_dir: Path) -> list[Path]:
    import grpc_tools  # dev dependency only
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto

    sources = sorted((PROTOS / PACKAGE).glob("*.proto"))
    (out_dir / PACKAGE).mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(s) for s in sources],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    init = out_dir / PACKAGE / "__init__.py"
    init.write_text('"""Generated from protos/hoard/v1 by scripts/gen_protos.py. Do not edit."""\n')
    return sorted(p.relative_to(out_dir) for p in (out_dir / PACKAGE).iterdir() if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if not args.check:
        files = generate(OUT)
        print(f"wrote {len(files)} files under {OUT / PACKAGE}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = sorted(p.relative_to(OUT) for p in (OUT / PACKAGE).iterdir() if p.is_file())
        stale = [str(p) for p in fresh if not (OUT / p).exists()]
        stale += [str(p) for p in committed if p not in fresh]
        stale += [
            str(p)
            for p in fresh
            if (OUT / p).exists() and not filecmp.cmp(Path(tmp) / p, OUT / p, shallow=False)
        ]
    if stale:
        print("generated stubs differ from protos/: " + ", ".join(sorted(set(stale))))
        print("run: python scripts/gen_protos.py")
        return 1
    print("generated stubs match protos/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
