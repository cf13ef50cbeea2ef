"""The files of deploy/ agree with the schemas they are written for and with each other.

No cluster, Docker or systemd is needed: Kubernetes manifests are checked against the API's
JSON schemas (kubernetes-validate's offline copies), Compose and Prometheus files are parsed
and cross-checked, the systemd unit goes through `systemd-analyze verify` where there is one.
Whether the image really builds and serves is tests/test_container.py's job.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from hoard_server.auth.tokens import read_tokens_file
from hoard_server.daemon.config import Config, exposed, load_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
# The oldest Kubernetes the manifests are written for, and the newest the schemas know.
K8S_VERSIONS = ("1.25.0", latest_version())


def _yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object in deploy/kubernetes, by "Kind/name"."""
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _yaml_documents(path):
            if doc["kind"] != "Kustomization":
                found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def _load_toml_config(path: Path) -> Config:
    notices: list[str] = []
    cfg = load_config(str(path), environ={}, notices=notices)
    assert notices == [], notices
    return cfg


def _configmap_config(tmp_path: Path) -> Config:
    body = _manifests()["ConfigMap/hoard-config"]["data"]["hoard.toml"]
    path = tmp_path / "hoard.toml"
    path.write_text(body)
    return _load_toml_config(path)


def _image_config() -> Config:
    return _load_toml_config(DEPLOY / "container" / "hoard.toml")


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _dockerfile() -> str:
    return (DEPLOY / "container" / "Dockerfile").read_text()


def _healthcheck_command() -> list[str]:
    """The image's HEALTHCHECK command (exec form), without its CMD keyword."""
    text = _dockerfile().replace("\\\n", " ")
    m = re.search(r"^HEALTHCHECK .*?\bCMD (\[.*\])$", text, re.MULTILINE)
    assert m, "the Dockerfile has no exec-form HEALTHCHECK"
    return yaml.safe_load(m.group(1))


# --- Kubernetes ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", sorted(_manifests()))
def test_every_kubernetes_manifest_matches_the_api_schema(name, version):
    kubernetes_validate.validate(_manifests()[name], version, strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (for kustomize)")
def test_the_kustomization_renders_the_manifests_it_lists():
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    expected = {
        f"{doc['kind']}/{doc['metadata']['name']}"
        for path in listed
        for doc in _yaml_documents(K8S / path)
    }
    assert {f"{o['kind']}/{o['metadata']['name']}" for o in objects} == expected
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)
    # The example Secrets stay out: an apply must never replace real ones.
    assert not any(o["kind"] == "Secret" for o in objects)


def test_the_statefulset_mounts_what_its_config_names(tmp_path):
    cfg = _configmap_config(tmp_path)
    pod = _manifests()["StatefulSet/hoard"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claims = {
        c["metadata"]["name"]
        for c in _manifests()["StatefulSet/hoard"]["spec"]["volumeClaimTemplates"]
    }
    assert set(mounts) <= set(volumes) | claims

    # The Secrets' files are where [security] looks, read-only.
    sec = cfg.security
    secret_dir = posixpath.dirname(sec.tokens_file)
    assert {posixpath.dirname(p) for p in (sec.tls_cert, sec.tls_key)} == {secret_dir}
    (mount,) = (m for m in mounts.values() if m["mountPath"] == secret_dir)
    assert mount.get("readOnly") is True
    items = {
        item["path"]: (source["secret"]["name"], item["key"])
        for source in volumes[mount["name"]]["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    for path in (sec.tokens_file, sec.tls_cert, sec.tls_key):
        assert posixpath.basename(path) in items, f"{path} is not in the secrets volume"

    # ... and the example Secrets have those keys.
    for secret_name, key in items.values():
        if secret_name == "hoard-client-ca":  # optional: mutual TLS only
            continue
        data = _manifests()[f"Secret/{secret_name}"]["stringData"]
        assert key in data, f"secret.example.yaml: {secret_name} lacks {key}"

    # The config's paths and the mounts agree: data, and the probes' unix socket.
    assert mounts["data"]["mountPath"] == cfg.server.data_dir
    (socket,) = (a.removeprefix("unix:") for a in cfg.server.listen if a.startswith("unix:"))
    assert posixpath.dirname(socket) in {m["mountPath"] for m in mounts.values()}
    assert not cfg.server.allow_remote and exposed(cfg) == []


def test_the_example_tokens_file_is_a_valid_empty_one(tmp_path):
    body = _manifests()["Secret/hoard-tokens"]["stringData"]["tokens.toml"]
    path = tmp_path / "tokens.toml"
    path.write_text(body)
    assert read_tokens_file(str(path)) == {}


def test_kubernetes_probes_metrics_and_ports_agree_with_the_config(tmp_path):
    cfg = _configmap_config(tmp_path)
    pod = _manifests()["StatefulSet/hoard"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    tcp = [a for a in cfg.server.listen if not a.startswith("unix:")]
    assert [ports["grpc"]] == [_port(a) for a in tcp]
    assert ports["metrics"] == _port(cfg.server.metrics_listen)
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    # Exec probes running the image's health check: the TLS port defeats kubelet's
    # plaintext grpc probe (statefulset.yaml says why).
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == _healthcheck_command(), probe
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"]
    assert {"requests", "limits"} <= set(container["resources"])
    for service in ("Service/hoard", "Service/hoard-headless"):
        (port,) = _manifests()[service]["spec"]["ports"]
        assert port["targetPort"] == "grpc"


# --- the image ----------------------------------------------------------------------------


def test_the_image_config_serves_only_with_tokens_and_tls():
    cfg = _image_config()
    assert not cfg.server.allow_remote and exposed(cfg) == []
    assert any(a.startswith("unix:") for a in cfg.server.listen)  # the health check's


def test_the_dockerfile_takes_its_base_and_copies_only_what_the_context_holds():
    text = _dockerfile()
    assert re.search(r"^ARG BASE=python:3\.11-slim$", text, re.MULTILINE)
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["${BASE}", "${BASE}"]
    assert "ENV " in text and "HOARD_CONFIG=/etc/hoard/hoard.toml" in text
    # Every COPY from the build context is let through by the ignore file.
    ignore = (DEPLOY / "container" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [line[1:] for line in ignore if line.startswith("!")]
    sources = [
        src
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE)
        for src in shlex.split(line)[:-1]
    ]
    assert sources
    for src in sources:
        assert any(src == a or src.startswith(a + "/") for a in allowed), src
    # The health check is the script the image installs.
    (command,) = _healthcheck_command()
    assert f"COPY deploy/container/healthcheck.py /opt/hoard/bin/{command}" in text
    assert (DEPLOY / "container" / "healthcheck.py").stat().st_mode & 0o111


def test_the_health_check_fails_without_a_daemon(tmp_path):
    script = DEPLOY / "container" / "healthcheck.py"
    run = subprocess.run(
        [sys.executable, str(script), f"unix:{tmp_path}/absent.sock"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert "UNAVAILABLE" in run.stderr


def test_the_health_check_passes_against_a_daemon(hoard_daemon):
    script = DEPLOY / "container" / "healthcheck.py"
    run = subprocess.run(
        [sys.executable, str(script), hoard_daemon.target],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("SERVING")


# --- Compose ------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())


def _daemon_service(compose: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = (
        (name, svc)
        for name, svc in compose["services"].items()
        if svc.get("build", {}).get("dockerfile") == "deploy/container/Dockerfile"
    )
    return found


def test_prometheus_scrapes_the_daemons_metrics_port():
    compose = _compose()
    name, hoard = _daemon_service(compose)
    listen = hoard.get("environment", {}).get(
        "HOARD_METRICS_LISTEN", _image_config().server.metrics_listen
    )
    port = _port(listen)
    assert str(port) in [str(p) for p in hoard.get("expose", [])]

    prometheus = compose["services"]["prometheus"]
    flags = dict(arg.split("=", 1) for arg in prometheus["command"])
    mounted = {
        volume.split(":")[1]: volume.split(":")[0]
        for volume in prometheus["volumes"]
        if volume.startswith("./")
    }
    config_file = mounted[flags["--config.file"]]
    config = yaml.safe_load((DEPLOY / "compose" / config_file).read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert f"{name}:{port}" in targets


def test_compose_secrets_are_where_the_image_looks_and_exist_or_are_documented():
    compose = _compose()
    _, hoard = _daemon_service(compose)
    targets = {s["source"]: s["target"] for s in hoard["secrets"]}
    sec = _image_config().security
    assert {sec.tokens_file, sec.tls_cert, sec.tls_key} <= set(targets.values())
    readme = (DEPLOY / "compose" / "secrets" / "README.md").read_text()
    for source in targets:
        file = compose["secrets"][source]["file"]
        path = DEPLOY / "compose" / file
        assert path.exists() or f"`{posixpath.basename(file)}`" in readme, file


def test_compose_health_check_and_socket_match_the_image():
    _, hoard = _daemon_service(_compose())
    assert hoard["healthcheck"]["test"] == ["CMD", *_healthcheck_command()]
    (socket,) = (
        a.removeprefix("unix:") for a in _image_config().server.listen if a.startswith("unix:")
    )
    # The root filesystem is read-only: the socket needs a writable directory.
    assert hoard["read_only"] and posixpath.dirname(socket) in hoard["tmpfs"]
    assert int(hoard["stop_grace_period"].rstrip("s")) > _image_config().server.grace_period


# --- systemd ------------------------------------------------------------------------------


def _unit() -> str:
    return (DEPLOY / "systemd" / "hoard.service").read_text()


def test_the_unit_loads_the_credentials_its_config_reads():
    credentials = dict(
        line.split("=", 1)[1].split(":", 1)
        for line in _unit().splitlines()
        if line.startswith("LoadCredential=")
    )
    with (DEPLOY / "systemd" / "hoard.toml").open("rb") as fh:
        security = tomllib.load(fh)["security"]
    for key in ("tokens_file", "tls_cert", "tls_key"):
        directory, name = posixpath.split(security[key])
        assert directory == "/run/credentials/hoard.service", key
        assert name in credentials, f"hoard.service does not load the credential {name}"
        assert credentials[name].startswith("/etc/hoard/")
    assert "ExecReload=/bin/kill -HUP $MAINPID" in _unit()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path):
    # verify wants ExecStart's program to exist: any executable will do.
    unit = tmp_path / "hoard.service"
    unit.write_text(_unit().replace("/usr/local/bin/hoard", shutil.which("true") or "/bin/true"))
    run = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    complaints = [
        line
        for line in (run.stdout + run.stderr).splitlines()
        # Newer than this host's systemd (260): ignored by older ones, said in the unit.
        if line.strip() and "Unknown key 'RefreshOnReload'" not in line
    ]
    assert run.returncode == 0 and complaints == [], complaints
