"""The daemon's configuration: every key declared once, and everything else agreeing with it.

The loader, the flags, the sample files and the docs are derived from (or checked against)
the declarations in ``hoard_server.daemon.config``; these tests keep them from drifting.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from hoard_server.daemon import schema
from hoard_server.daemon.config import Config, ConfigError, exposed, load_config
from hoard_server.daemon.main import build_parser
from hoard_server.storage.repository import StorageSettings

ROOT = Path(__file__).resolve().parent.parent
KEYS = list(schema.keys(Config))


def _other_value(k: schema.Key) -> tuple[object, str]:
    """A valid value different from the default, and how it is written in text."""
    if k.type is bool:
        return (not k.default), str(not k.default).lower()
    if k.type is tuple:
        return ("127.0.0.1:7001", "unix:/tmp/x.sock"), "127.0.0.1:7001,unix:/tmp/x.sock"
    if k.info.choices:
        other = next(c for c in k.info.choices if c != k.default)
        return other, other
    if k.type is str:
        return "elsewhere", "elsewhere"
    value = k.type(max(k.default, k.info.at_least or 0, k.info.more_than or 0) + 1)
    if k.name == "maintenance_duty":
        value = 0.5
    return value, str(value)


def _get(cfg: Config, k: schema.Key) -> object:
    return getattr(getattr(cfg, k.section), k.name)


# Keys that are valid only with others (the TLS files go together)
_COMPANIONS = {
    "tls_cert": {"tls_key": "key.pem"},
    "tls_key": {"tls_cert": "cert.pem"},
    "tls_client_ca": {"tls_cert": "cert.pem", "tls_key": "key.pem"},
    "metrics_tls": {"tls_cert": "cert.pem", "tls_key": "key.pem"},
}


@pytest.mark.parametrize("k", KEYS, ids=lambda k: k.name)
def test_every_key_is_set_by_its_table_its_variable_and_its_flag(tmp_path, k):
    value, text = _other_value(k)
    if k.name == "workers":  # leave room for the stream slots
        value, text = 100, "100"
    companions = {schema.find(Config, n): v for n, v in _COMPANIONS.get(k.name, {}).items()}
    f = tmp_path / "hoard.toml"
    lines = [f"{c.name} = {schema.toml_value(v)}" for c, v in companions.items()]
    f.write_text(f"[{k.section}]\n{k.name} = {schema.toml_value(value)}\n" + "\n".join(lines))
    assert _get(load_config(str(f), environ={}), k) == value
    env = {c.env: v for c, v in companions.items()}
    assert _get(load_config(environ={k.env: text, **env}), k) == value
    if k.type is bool:
        argv = [k.flag if value else "--no-" + k.flag[2:]]
    elif k.type is tuple:
        argv = [arg for v in value for arg in (k.flag, v)]
    else:
        argv = [k.flag, text]
    argv += [arg for c, v in companions.items() for arg in (c.flag, v)]
    args = build_parser().parse_args(argv)
    assert _get(load_config(overrides=schema.overrides(args, Config), environ={}), k) == value


def test_print_config_round_trips(tmp_path):
    env = {"HOARD_WORKERS": "12", "HOARD_BACKUP_ROOTS": "/b1,/b2", "HOARD_GROUP_ACCESS": "read"}
    cfg = load_config(environ=env)
    f = tmp_path / "printed.toml"
    f.write_text(schema.render_toml(cfg))
    assert load_config(str(f), environ={}) == cfg


def test_hoard_serve_print_config(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "hoard_server", "serve", "--print-config", "--workers", "9"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOARD_DATA_DIR": "/srv/h"},
    )
    assert r.returncode == 0, r.stderr
    doc = tomllib.loads(r.stdout)
    assert doc["server"]["workers"] == 9 and doc["server"]["data_dir"] == "/srv/h"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nworkres = 4\n", "did you mean 'workers'"),
        ("[limits]\nworkers = 4\n", "it belongs in \\[server\\]"),
        ("[server]\nworkers = '4'\n", "workers = '4' is not an integer"),
        ("[server]\nworkers = 4.5\n", "is not an integer"),
        ("[server]\nallow_remote = 'yes'\n", "is not a boolean"),
        ("[server]\nworkers = 0\n", "workers must be at least 1"),
        ("[storage]\ngroup_access = 'all'\n", "group_access must be one of none, read, write"),
        ("[limits]\nkeepalive_timeout = 0\n", "keepalive_timeout must be more than 0"),
        ("workers = 4\n", "outside a section"),
        ("[limits]\nmax_upload_streams = 64\n", "must leave at least one"),
    ],
)
def test_mistakes_are_named(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(f), environ={})


def test_a_bad_variable_is_named():
    with pytest.raises(ConfigError, match="HOARD_WORKERS: workers = 'many' is not an integer"):
        load_config(environ={"HOARD_WORKERS": "many"})
    assert load_config(environ={"HOARD_LOG_LEVEL": "DEBUG"}).server.log_level == "debug"


def test_keys_that_moved_section_are_still_read_where_they_were(tmp_path):
    f = tmp_path / "old.toml"
    f.write_text(
        "[server]\nmax_read_streams = 5\nmaintenance_interval = 30.0\nbackup_roots = ['/b']\n"
        "[storage]\nmaintenance_duty = 0.5\n"
    )
    notices: list[str] = []
    cfg = load_config(str(f), environ={}, notices=notices)
    assert cfg.limits.max_read_streams == 5 and cfg.maintenance.maintenance_interval == 30.0
    assert cfg.maintenance.backup_roots == ("/b",)
    assert cfg.storage_settings().maintenance_duty == 0.5
    assert len(notices) == 4 and "belongs in [limits] now" in notices[0]


def test_the_storage_section_covers_the_engine_settings():
    declared = {k.name for k in KEYS if k.section in ("storage", "maintenance")}
    engine = {f.name for f in dataclasses.fields(StorageSettings)}
    assert engine <= declared, f"StorageSettings fields without a config key: {engine - declared}"
    assert Config().storage_settings() == StorageSettings()


def _sample_keys(text: str) -> dict[str, set[str]]:
    """Keys set or shown commented out (``# key = ...``), per section."""
    found: dict[str, set[str]] = {}
    section = ""
    for line in text.splitlines():
        if m := re.match(r"\s*\[(\w+)\]", line):
            section = m.group(1)
        elif m := re.match(r"\s*#?\s*(\w+)\s*=", line):
            found.setdefault(section, set()).add(m.group(1))
    return found


def test_the_systemd_sample_names_every_key_where_it_belongs(tmp_path):
    path = ROOT / "deploy" / "systemd" / "hoard.toml"
    notices: list[str] = []
    load_config(str(path), environ={}, notices=notices)
    assert notices == []
    found = _sample_keys(path.read_text())
    for k in KEYS:
        assert k.name in found.get(k.section, ()), f"{path} does not show [{k.section}] {k.name}"
    assert sum(map(len, found.values())) == len(KEYS)


def test_the_kubernetes_configmap_parses_and_serves_only_with_tokens_and_tls(tmp_path):
    text = (ROOT / "deploy" / "kubernetes" / "configmap.yaml").read_text()
    body = textwrap.dedent(text.split("hoard.toml: |\n", 1)[1])
    f = tmp_path / "hoard.toml"
    f.write_text(body)
    notices: list[str] = []
    cfg = load_config(str(f), environ={}, notices=notices)
    assert not cfg.server.allow_remote and exposed(cfg) == []
    assert notices == []


@pytest.mark.parametrize("section", list(schema.sections(Config)))
def test_the_docs_table_is_the_declared_one(section):
    docs = (ROOT / "docs" / "operations.md").read_text()
    table = schema.render_markdown(Config, section)
    assert f"### `[{section}]`" in docs
    assert table in docs, f"update docs/operations.md, section [{section}], to:\n\n{table}\n"
