"""What authentication and TLS cost per RPC (issue 10): small-object put and has throughput
through the SDK against the real daemon, in five configurations, in one run.

    python -m tests.benchmarks.bench_auth [--objects 20000] [--calls 3000] [--quick]
        [--work-dir ./bench-work] [--markdown docs/benchmarks.md]

Configurations: plain (no token, no TLS), token only, TLS only, token + TLS, and token +
mutual TLS. Each gets a daemon of its own (a fresh data directory, certificates made by
trustme), all running at once, and the same workload from one client thread: PutBatch of
1 KiB objects (``put_objects``), single puts (``put_object``, one unary call each) and
single ``has`` calls. The configurations take turns, round after round, and each figure is
the median of its rounds, so that the load of a shared machine weighs on all alike.

Figures are reported as ratios to plain: the cost of a bearer token is the daemon's check
of it (a SHA-256 and a lookup) and the bytes of the header; TLS's is the encryption of every
byte, and a handshake per connection (one per run here). This module is never part of the
pytest suite.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trustme

import hoard
from hoard_server.auth.tokens import Role, add_token
from tests.benchmarks.bench_objects import (
    filesystem_of,
    finish_run,
    fmt_rate,
    machine_info,
    make_objects,
    package_version,
    run_header,
)
from tests.harness.daemon import ClientTLS, DaemonProcess

SECTION = "## Authentication and TLS (issue 10)"
SEED = 20261129


@dataclass(frozen=True)
class Setup:
    """One configuration: daemon flags and what the client presents."""

    name: str
    token: bool
    tls: bool
    mutual: bool = False


SETUPS = (
    Setup("plain", token=False, tls=False),
    Setup("token", token=True, tls=False),
    Setup("TLS", token=False, tls=True),
    Setup("token + TLS", token=True, tls=True),
    Setup("token + mTLS", token=True, tls=True, mutual=True),
)


@dataclass(frozen=True)
class Settings:
    objects: int  # put through PutBatch
    calls: int  # single puts, and single has calls
    rounds: int  # every configuration measured once per round, in turn


class Material:
    """Certificates and a tokens file for every configuration, in ``folder``."""

    def __init__(self, folder: str) -> None:
        ca = trustme.CA()
        server = ca.issue_cert("localhost", "127.0.0.1")
        client = ca.issue_cert("bench@localhost")
        self.paths: dict[str, str] = {}
        for name, blob in (
            ("ca", ca.cert_pem),
            ("server_cert", server.cert_chain_pems[0]),
            ("server_key", server.private_key_pem),
            ("client_cert", client.cert_chain_pems[0]),
            ("client_key", client.private_key_pem),
        ):
            self.paths[name] = os.path.join(folder, f"{name}.pem")
            blob.write_to_path(self.paths[name])
        self.tokens = os.path.join(folder, "tokens.toml")
        self.token = add_token(self.tokens, "bench", {"*": Role.ADMIN})

    def daemon_args(self, setup: Setup) -> list[str]:
        args = []
        if setup.token:
            args += ["--tokens-file", self.tokens]
        if setup.tls:
            args += ["--tls-cert", self.paths["server_cert"], "--tls-key", self.paths["server_key"]]
        if setup.mutual:
            args += ["--tls-client-ca", self.paths["ca"]]
        return args

    def client_tls(self, setup: Setup) -> ClientTLS | None:
        if not setup.tls:
            return None
        if setup.mutual:
            return ClientTLS(self.paths["ca"], self.paths["client_cert"], self.paths["client_key"])
        return ClientTLS(self.paths["ca"])


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Contender:
    """One configuration's daemon and client, measured round after round."""

    def __init__(self, setup: Setup, material: Material, work: str) -> None:
        self.setup = setup
        folder = os.path.join(work, setup.name.replace(" ", "").replace("+", "-"))
        os.makedirs(folder)
        self.daemon = DaemonProcess(
            os.path.join(folder, "data"),
            *material.daemon_args(setup),
            log_path=os.path.join(folder, "hoard.log"),
            tls=material.client_tls(setup),
        )
        self.daemon.start(timeout=60)
        # whether the daemon refused a call without a token (False: this build checks none)
        self.enforced = setup.token and _refused(self.daemon)
        self.client = self.daemon.connect(**({"token": material.token} if setup.token else {}))
        self.repo = self.client.repository("default")
        self.seed = SEED + 1000 * SETUPS.index(setup)
        self.repo.put_objects(make_objects(200, self.seed))  # warm: connection, index, threads
        self.seconds: dict[str, list[float]] = {name: [] for name in SCENARIOS}

    def round(self, cfg: Settings, number: int) -> None:
        """Every scenario once, on objects of this round's own (stores deduplicate)."""
        seed = self.seed + 10 * (number + 1)
        batch = make_objects(cfg.objects, seed)
        singles = make_objects(cfg.calls, seed + 1)
        keys: list[str] = []
        self.seconds["PutBatch"].append(timed(lambda: self.repo.put_objects(batch)))
        self.seconds["put"].append(
            timed(lambda: keys.extend(self.repo.put_object(b) for b in singles))
        )
        self.seconds["has"].append(timed(lambda: [self.repo.has_object(k) for k in keys]))
        if not all(self.repo.has_objects(keys)):
            raise RuntimeError(f"{self.setup.name}: an object put is missing")

    def median(self) -> dict[str, float]:
        return {name: statistics.median(times) for name, times in self.seconds.items()}

    def close(self) -> None:
        self.client.close()
        self.daemon.stop(timeout=60)


def _refused(daemon: DaemonProcess) -> bool:
    with daemon.connect() as anonymous:
        try:
            anonymous.repository("default").has_object("0" * 64)
        except hoard.AuthenticationError:
            return True
    return False


def _work(scenario: str, cfg: Settings) -> int:
    return cfg.objects if scenario == "PutBatch" else cfg.calls


SCENARIOS = {
    "PutBatch": "1 KiB objects through PutBatch (objects/s)",
    "put": "single put of a 1 KiB object (calls/s)",
    "has": "single has (calls/s)",
}


def table(results: dict[str, dict[str, float]], cfg: Settings, *, markdown: bool) -> str:
    header = ["scenario", *results]
    rows = [header]
    for scenario, label in SCENARIOS.items():
        plain = results["plain"][scenario]
        cells = [label]
        for name, seconds in results.items():
            rate = fmt_rate(_work(scenario, cfg), seconds[scenario], "").rstrip(" /s")
            ratio = plain / seconds[scenario]
            cells.append(rate if name == "plain" else f"{rate} ({ratio:.2f}x)")
        rows.append(cells)
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        return "\n".join(out)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def markdown_section(
    results: dict[str, dict[str, float]],
    cfg: Settings,
    info: dict[str, str],
    command: str,
    enforced: bool,
) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    note = (
        "The daemon checked the token on every call."
        if enforced
        else "This daemon build did not check tokens yet (the auth interceptor was not in it): "
        "the token rows measure the client's side only (the header on every call)."
    )
    return "\n".join(
        [
            SECTION,
            "",
            *run_header(date, command, info),
            "",
            f"One client thread over loopback TCP; {cfg.objects:,} objects through PutBatch, "
            f"{cfg.calls:,} single puts and {cfg.calls:,} single has calls per configuration "
            f"and round, each configuration against a daemon of its own, all running; the "
            f"configurations take turns, and each figure is the median of {cfg.rounds} "
            "rounds. In brackets: the rate as a share of plain (1.00x: no cost). Single puts "
            f"are durable (an fsync each), which their rate mostly measures. {note}",
            "",
            table(results, cfg, markdown=True),
            "",
            "Absolute numbers drift 20-40% between runs on shared machines; the ratios are "
            "what matter.",
            "",
        ]
    )


def update_markdown(path: str, section: str) -> None:
    """Replace the section (up to the next ``## `` heading) in ``path``, or append it."""
    with open(path) as fh:
        lines = fh.read().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        lines += ["", *section.splitlines()]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
        lines[start : end if end is not None else len(lines)] = section.splitlines() + (
            [""] if end is not None else []
        )
    with open(path, "w") as fh:
        fh.write("\n".join(lines).rstrip("\n") + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_auth",
        description="What tokens and TLS cost per RPC: put and has in five configurations.",
    )
    p.add_argument("--objects", type=int, help="objects put through PutBatch (20000; --quick 2000)")
    p.add_argument("--calls", type=int, help="single puts and has calls (3000; --quick 300)")
    p.add_argument("--rounds", type=int, help="rounds, the median reported (3; --quick 1)")
    p.add_argument("--quick", action="store_true", help="smoke run at small sizes")
    p.add_argument("--work-dir", default="./bench-work", help="where the daemons keep their data")
    p.add_argument("--markdown", metavar="PATH", help=f"write/update '{SECTION[3:]}' there")
    p.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    p.add_argument("--allow-tmpfs", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    cfg = Settings(
        objects=args.objects or (2000 if args.quick else 20_000),
        calls=args.calls or (300 if args.quick else 3000),
        rounds=args.rounds or (1 if args.quick else 3),
    )
    made_root = not os.path.exists(args.work_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    mount, fstype = filesystem_of(args.work_dir)
    if fstype in ("tmpfs", "ramfs") and not args.allow_tmpfs:
        print(f"{args.work_dir} is on {fstype} ({mount}): use a real disk", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="run-", dir=args.work_dir)
    command = shlex.join(["python", "-m", "tests.benchmarks.bench_auth", *argv])
    info = machine_info(work)
    info["packages"] = ", ".join(f"{p} {package_version(p)}" for p in ("hoard", "grpcio"))
    print(f"{command}\nwork dir {work} ({info['disk']})", flush=True)
    load_before = os.getloadavg()[0]
    contenders: list[Contender] = []
    try:
        material = Material(work)
        for setup in SETUPS:
            contenders.append(Contender(setup, material, work))
        for number in range(cfg.rounds):  # in turn: a load change hits every one alike
            for contender in contenders:
                contender.round(cfg, number)
            print(f"round {number + 1} of {cfg.rounds} done", flush=True)
        results = {c.setup.name: c.median() for c in contenders}
        enforced = all(c.enforced for c in contenders if c.setup.token)
    finally:
        for contender in contenders:
            contender.close()
        finish_run(args, work, made_root)
    info["load"] = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print()
    print(table(results, cfg, markdown=False))
    print(f"\n1-minute load average: {info['load']}")
    if not enforced:
        print("note: this daemon did not check tokens (no auth interceptor in this build)")
    if args.markdown:
        update_markdown(args.markdown, markdown_section(results, cfg, info, command, enforced))
        print(f"updated {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
