"""What each served method asks of a caller, read once from the protos' descriptors.

Every rpc of hoard.v1 declares ``option (hoard.v1.role)`` (access.proto); where its request
names the repository (``repository``, or ``node.repository`` / ``header.repository``) is
found from the request's descriptor, not written down by hand. grpc's health service is open
to everyone and server reflection needs only a known token. A served method that declares no
role is a bug in the protos: building the policy fails, so the daemon does not start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from hoard.v1 import access_pb2
from hoard_server.auth.tokens import Role

__all__ = ["AccessPolicy", "MethodAccess", "MissingRole", "render_markdown"]

OPEN_SERVICES = frozenset({health.SERVICE_NAME})
ANY_TOKEN_SERVICES = frozenset({reflection.SERVICE_NAME})

Path = tuple[str, ...]


class MissingRole(TypeError):
    """A served method says nothing about who may call it."""


@dataclass(frozen=True)
class MethodAccess:
    """One method's rule: the role it needs, and where its requests name their repository.

    ``role`` None: any known token (server reflection). No ``paths``: the request names no
    repository, so a known token is enough (ListRepositories filters its own answer)."""

    method: str  # "/hoard.v1.Objects/Put"
    role: Role | None
    paths: tuple[Path, ...]
    client_streaming: bool

    @property
    def name(self) -> str:
        """``hoard.v1.Objects/Put``: how messages and the audit log name the method."""
        return self.method.lstrip("/")

    def named(self, message: object) -> list[str]:
        """The repositories ``message`` names, one per path whose parents are set."""
        found: list[str] = []
        for path in self.paths:
            node = message
            for part in path[:-1]:
                if not node.HasField(part):  # type: ignore[attr-defined]
                    break
                node = getattr(node, part)
            else:
                found.append(getattr(node, path[-1]))
        return found


def _is_string(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated


def repository_paths(request: Descriptor) -> tuple[Path, ...]:
    """Paths to the request's ``repository`` string: at its top, or one message below."""
    paths: list[Path] = []
    for field in request.fields:
        if field.name == "repository" and _is_string(field):
            paths.append((field.name,))
        elif field.message_type is not None and not field.is_repeated:
            for inner in field.message_type.fields:
                if inner.name == "repository" and _is_string(inner):
                    paths.append((field.name, inner.name))
    return tuple(paths)


class AccessPolicy:
    """The rule of every method of the served services, by gRPC method path."""

    def __init__(self, services: Iterable[str]) -> None:
        self.services = tuple(services)
        self._rules: dict[str, MethodAccess | None] = {}
        pool = descriptor_pool.Default()
        for name in self.services:
            service = pool.FindServiceByName(name)
            for method in service.methods:
                path = f"/{name}/{method.name}"
                self._rules[path] = self._rule(name, path, method)

    @staticmethod
    def _rule(service: str, path: str, method: object) -> MethodAccess | None:
        streaming = bool(method.client_streaming)  # type: ignore[attr-defined]
        if service in OPEN_SERVICES:
            return None
        if service in ANY_TOKEN_SERVICES:
            return MethodAccess(path, None, (), streaming)
        declared = method.GetOptions().Extensions[access_pb2.role]  # type: ignore[attr-defined]
        if declared == access_pb2.ROLE_UNSPECIFIED:
            raise MissingRole(
                f"{path.lstrip('/')} declares no role: give every rpc an "
                "`option (hoard.v1.role) = ROLE_READ|ROLE_WRITE|ROLE_ADMIN;` "
                "(protos/hoard/v1/access.proto) and regenerate (scripts/gen_protos.py)"
            )
        paths = repository_paths(method.input_type)  # type: ignore[attr-defined]
        return MethodAccess(path, Role(declared), paths, streaming)

    def __contains__(self, method: str) -> bool:
        return method in self._rules

    def rule(self, method: str) -> MethodAccess | None:
        """The method's rule; None for an open method (health). KeyError: not served."""
        return self._rules[method]

    def rules(self) -> list[MethodAccess]:
        return [r for r in self._rules.values() if r is not None]


def render_markdown(policy: AccessPolicy) -> str:
    """The table of docs/security.md: every method that needs a role, by service."""
    lines = [
        "| Service | Method | Role needed | Repository taken from |",
        "|---|---|---|---|",
    ]
    for rule in policy.rules():
        service, method = rule.method.strip("/").rsplit("/", 1)
        role = rule.role.label if rule.role is not None else "any known token"
        where = (
            ", ".join(f"`{'.'.join(p)}`" for p in rule.paths)
            if rule.paths
            else "none: a known token is enough"
        )
        if rule.paths and rule.client_streaming:
            where += " of every message naming one"
        lines.append(f"| `{service}` | `{method}` | {role} | {where} |")
    open_services = ", ".join(f"`{s}`" for s in policy.services if s in OPEN_SERVICES)
    if open_services:
        lines.append(f"| {open_services} | every method | none: open to everyone | |")
    return "\n".join(lines) + "\n"
