"""The container image is really built and run: deploy/container/build-and-check.sh.

The script builds deploy/container/Dockerfile with buildah on a Debian base made by
debootstrap (no image registry needed), starts the image's daemon, and checks health, a put
and a get from this host. A cold run (debootstrap included) takes about two minutes, a run
with the cached base under one; see docs/operations.md, "Checking the image".
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hoard

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "container" / "build-and-check.sh"


def _missing() -> list[str]:
    missing = [
        f"{tool} (apt-get install {tool})"
        for tool in ("buildah", "debootstrap")
        if shutil.which(tool) is None
    ]
    if os.geteuid() != 0:
        missing.append("root (buildah and debootstrap need it here)")
    return missing


MISSING = _missing()


@pytest.mark.container
@pytest.mark.timeout(1200)
@pytest.mark.skipif(bool(MISSING), reason="needs " + ", ".join(MISSING))
def test_the_image_builds_runs_and_serves_from_outside():
    env = dict(
        os.environ,
        HOARD_PYTHON=sys.executable,
        PYTHONPATH=os.pathsep.join(
            [str(ROOT / "client"), str(ROOT / "server"), os.environ.get("PYTHONPATH", "")]
        ),
    )
    run = subprocess.run(
        [str(SCRIPT)], env=env, capture_output=True, text=True, timeout=1100, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    seen = [
        "health from the host: SERVING",
        "3145747 bytes round-tripped",
        "hoard-healthcheck: hoard at unix:/run/hoard/hoard.sock: SERVING",
        "exit status 0, clean stop logged",
    ]
    if (ROOT / "server" / "hoard_server" / "observe").exists():
        seen.append("metrics from the host: ")
    # With TLS in the SDK and token checks in the daemon, the image runs as configured.
    secure = "tls_ca" in inspect.signature(hoard.connect).parameters and (
        importlib.util.find_spec("hoard_server.auth.interceptor") is not None
    )
    if secure:
        seen += ["over TLS with a token", "a call without a token: refused"]
    for line in seen:
        assert line in output, output
