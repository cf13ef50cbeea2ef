#!/usr/bin/env bash
# One entry point for a fresh checkout (needs only python3 >= 3.11 with pip and venv):
#
#   scripts/dev.sh serve [hoard serve options]   set up, then run the daemon on 127.0.0.1:50051
#   scripts/dev.sh test  [pytest options]        set up, then check stubs, lint, type-check, run the tests
#   scripts/dev.sh bench [NAME] [options]        set up with the peers, then run a benchmark:
#                                                NAME is objects, maintenance, datasets or auth
#                                                (tests/benchmarks/bench_NAME.py); with no NAME
#                                                and no options, all four; options alone: objects
#
# Everything is installed into ./.venv; nothing outside the checkout is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${HOARD_VENV:-.venv}"

setup() {
    local extras="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
}

cmd="${1:-}"
shift || true
case "$cmd" in
    serve)
        setup server
        exec "$VENV/bin/hoard" serve "$@"
        ;;
    test)
        setup dev
        "$VENV/bin/python" scripts/gen_protos.py --check
        "$VENV/bin/ruff" check .
        "$VENV/bin/python" -m mypy
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    bench)
        setup dev,bench
        case "${1:-}" in
            objects|maintenance|datasets|auth)
                name="$1"
                shift
                exec "$VENV/bin/python" -m "tests.benchmarks.bench_$name" "$@"
                ;;
            "")
                for name in objects maintenance datasets auth; do
                    "$VENV/bin/python" -m "tests.benchmarks.bench_$name"
                done
                ;;
            *)
                exec "$VENV/bin/python" -m tests.benchmarks.bench_objects "$@"
                ;;
        esac
        ;;
    *)
        echo "usage: scripts/dev.sh serve|test|bench [objects|maintenance|datasets|auth] [options]" >&2
        exit 2
        ;;
esac
