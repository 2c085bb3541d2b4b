"""Regenerates everything derived from protos/: Python stubs (with .pyi),
the gateway's descriptor set and its OpenAPI document.

Run from anywhere: `make proto` (or `python scripts/gen_protos.py`).
Output is deterministic so CI can check it with `git diff --exit-code`.
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PY_OUT = ROOT / "gen" / "python"
GATEWAY_OUT = ROOT / "gateway" / "generated"
DESCRIPTOR_SET = GATEWAY_OUT / "descriptors.binpb"


def _include_dirs() -> list[str]:
    # google/api/*.proto and google/rpc/*.proto ship inside the
    # googleapis-common-protos wheel; google/protobuf/*.proto inside grpc_tools.
    import google.api  # noqa: PLC0415

    googleapis = Path(google.api.__path__[0]).parent.parent
    well_known = Path(str(resources.files("grpc_tools") / "_proto"))
    return [str(PROTOS), str(googleapis), str(well_known)]


def _run(args: list[str]) -> None:
    includes = [f"-I{d}" for d in _include_dirs()]
    code = protoc.main(["protoc", *includes, *args])
    if code != 0:
        sys.exit(f"protoc failed ({code}): {' '.join(args[:3])} ...")


def main() -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    shutil.rmtree(PY_OUT / "aimusicstore", ignore_errors=True)
    PY_OUT.mkdir(parents=True, exist_ok=True)
    GATEWAY_OUT.mkdir(parents=True, exist_ok=True)

    _run([f"--python_out={PY_OUT}", f"--pyi_out={PY_OUT}", f"--grpc_python_out={PY_OUT}", *sources])
    for pkg_dir in [PY_OUT / "aimusicstore", *(p for p in (PY_OUT / "aimusicstore").rglob("*") if p.is_dir())]:
        (pkg_dir / "__init__.py").touch()

    # The transcoder needs every imported file (--include_imports) and the
    # comments (--include_source_info) feed the OpenAPI descriptions.
    # google/rpc/error_details.proto is added so that BadRequest details in
    # error responses can be rendered as JSON.
    _run(
        [
            f"--descriptor_set_out={DESCRIPTOR_SET}",
            "--include_imports",
            "--include_source_info",
            *sources,
            "google/rpc/error_details.proto",
            "google/rpc/status.proto",
        ]
    )

    # The stubs just generated (the gateway reads the protos' own options
    # through them), not those of another checkout the environment may point at.
    sys.path[:0] = [str(ROOT), str(PY_OUT)]
    from gateway import openapi  # noqa: PLC0415

    openapi.write(DESCRIPTOR_SET, GATEWAY_OUT)
    print(f"generated {len(sources)} protos -> {PY_OUT.relative_to(ROOT)}, {GATEWAY_OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
