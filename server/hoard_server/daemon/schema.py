"""Typed config sections: a key is declared once, everything else is derived from it.

A section is a frozen dataclass whose fields are declared with :func:`key`; the root config
is a frozen dataclass whose fields are sections (the field name is the TOML table). From
those declarations come the defaults, the TOML table and key, the ``HOARD_<KEY>`` variable,
the ``--<key>`` flag and its help, the checks and their messages, and the renderings as TOML
(``hoard serve --print-config``) and as the Markdown tables of docs/operations.md.

Key names are unique across sections, so the environment and the flags stay flat.
Supported types: ``int``, ``float``, ``bool``, ``str`` and ``tuple[str, ...]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import textwrap
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_META = "hoard.key"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class ConfigError(ValueError):
    """A configuration value a person has to fix; the message names it."""


@dataclass(frozen=True)
class KeyInfo:
    """What a field declares besides its name, type and default."""

    help: str
    flag: str | None = None  # default: --<key-with-dashes>
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    at_least: float | None = None
    more_than: float | None = None
    note: str = ""  # said after the default in the docs, e.g. "off"
    moved_from: str | None = None  # an older section still accepted in TOML files


def key(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    metavar: str | None = None,
    choices: typing.Iterable[str] = (),
    at_least: float | None = None,
    more_than: float | None = None,
    note: str = "",
    moved_from: str | None = None,
) -> Any:
    """Declare a config key: a dataclass field carrying its help, flag and checks."""
    info = KeyInfo(help, flag, metavar, tuple(choices), at_least, more_than, note, moved_from)
    return dataclasses.field(default=default, metadata={_META: info})


@dataclass(frozen=True)
class Key:
    """A declared key as the loader sees it."""

    section: str
    name: str
    type: type  # int, float, bool, str or tuple
    default: Any
    info: KeyInfo

    @property
    def env(self) -> str:
        return "HOARD_" + self.name.upper()

    @property
    def flag(self) -> str:
        return self.info.flag or "--" + self.name.replace("_", "-")

    @property
    def metavar(self) -> str | None:
        """The flag's argument as help shows it (None for choices and booleans)."""
        if self.type is bool or self.info.choices:
            return None
        return self.info.metavar or {int: "N", float: "X", str: "TEXT", tuple: "VALUE"}[self.type]

    @property
    def help(self) -> str:
        """The declared help, with a lower bound worth saying."""
        bound = self.info.at_least
        return self.info.help + (f" (at least {_number(bound)})" if bound else "")

    def where(self) -> str:
        """How a person sets it: ``workers (HOARD_WORKERS, --workers)``."""
        return f"{self.name} ({self.env}, {self.flag})"

    def parse_text(self, text: str, origin: str) -> Any:
        """A value from the environment: text in the key's type."""
        if self.type is bool:
            if text.strip().lower() in _TRUE:
                return True
            if text.strip().lower() in _FALSE:
                return False
        elif self.type is tuple:
            return tuple(s.strip() for s in text.split(",") if s.strip())
        else:
            try:
                return self.type(text.strip()) if self.type is not str else text
            except ValueError:
                pass
        raise ConfigError(f"{origin}: {self.name} = {text!r} is not {self._kind()}")

    def check_value(self, value: Any, origin: str) -> Any:
        """A value from TOML or a flag: already typed, but maybe the wrong type."""
        ok = {
            bool: isinstance(value, bool),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, int | float) and not isinstance(value, bool),
            str: isinstance(value, str),
            tuple: isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
        }[self.type]
        if ok:
            return tuple(value) if self.type is tuple else self.type(value)
        if self.type is tuple and isinstance(value, str):  # older files: "a,b"
            return self.parse_text(value, origin)
        raise ConfigError(f"{origin}: {self.name} = {value!r} is not {self._kind()}")

    def check_range(self, value: Any) -> Any:
        """The declared choices and bounds; a choice is matched without regard to case."""
        info = self.info
        if info.choices:
            if str(value).lower() not in info.choices:
                raise ConfigError(
                    f"{self.name} must be one of {', '.join(info.choices)}, not {value!r}"
                )
            return str(value).lower()
        if info.at_least is not None and value < info.at_least:
            raise ConfigError(f"{self.name} must be at least {_number(info.at_least)}")
        if info.more_than is not None and value <= info.more_than:
            raise ConfigError(f"{self.name} must be more than {_number(info.more_than)}")
        return value

    def _kind(self) -> str:
        return {
            bool: "a boolean (true or false)",
            int: "an integer",
            float: "a number",
            str: "a string",
            tuple: "a list of strings",
        }[self.type]


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def sections(root: type) -> dict[str, type]:
    """The root config's sections: TOML table name -> section dataclass."""
    hints = typing.get_type_hints(root)
    return {f.name: hints[f.name] for f in dataclasses.fields(root)}


def keys(root: type) -> Iterator[Key]:
    """Every declared key, section by section, in declaration order."""
    for section, cls in sections(root).items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            kind = typing.get_origin(kind) or kind
            yield Key(section, f.name, kind, f.default, f.metadata[_META])


def find(root: type, name: str) -> Key:
    for k in keys(root):
        if k.name == name:
            return k
    raise KeyError(name)


def load(
    root: type,
    document: Mapping[str, Any] | None = None,
    origin: str = "the config file",
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    notices: list[str] | None = None,
) -> Any:
    """Defaults < TOML ``document`` < ``HOARD_*`` in ``environ`` < ``overrides`` (flags).

    ``overrides`` maps key names to typed values; ``None`` means "not given". Keys found in
    the section they moved from are accepted and reported in ``notices``.
    """
    declared = {k.name: k for k in keys(root)}
    values = {name: k.default for name, k in declared.items()}
    tables = sections(root)
    for section, body in (document or {}).items():
        if not isinstance(body, dict):
            raise ConfigError(f"{section!r} in {origin} is outside a section such as [server]")
        if section not in tables:
            raise ConfigError(
                f"unknown section [{section}] in {origin}; expected "
                + ", ".join(f"[{s}]" for s in tables)
            )
        for name, value in body.items():
            k = declared.get(name)
            if k is None or section not in (k.section, k.info.moved_from):
                raise ConfigError(_unknown(name, section, origin, declared))
            if section != k.section and notices is not None:
                notices.append(f"{origin}: {name} belongs in [{k.section}] now, not [{section}]")
            values[name] = k.check_value(value, f"[{section}] of {origin}")
    for name, k in declared.items():
        if environ and k.env in environ:
            values[name] = k.parse_text(environ[k.env], k.env)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = declared[name].check_value(value, f"the command line ({name})")
    for name, k in declared.items():
        values[name] = k.check_range(values[name])
    built = {
        section: cls(**{k.name: values[k.name] for k in keys(root) if k.section == section})
        for section, cls in tables.items()
    }
    return root(**built)


def _unknown(name: str, section: str, origin: str, declared: Mapping[str, Key]) -> str:
    message = f"unknown key {name!r} in section [{section}] of {origin}"
    if name in declared:
        return message + f"; it belongs in [{declared[name].section}]"
    close = difflib.get_close_matches(name, declared, n=1)
    return message + (f"; did you mean {close[0]!r}?" if close else "")


def add_flags(parser: argparse.ArgumentParser, root: type) -> None:
    """One flag per key, grouped by section; ``dest`` is the key name."""
    groups = {s: parser.add_argument_group(f"[{s}]") for s in sections(root)}
    for k in keys(root):
        help = k.help.replace("`", "").replace("%", "%%")
        kw: dict[str, Any] = {"dest": k.name, "default": None}
        if k.type is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif k.type is tuple:
            kw.update(action="append", metavar=k.metavar)
            help += " (repeatable)"
        else:
            kw.update(type=k.type, metavar=k.metavar, choices=k.info.choices or None)
        default = toml_value(k.default) + (f", {k.info.note}" if k.info.note else "")
        help += f" (default: {default.replace('`', '').replace('%', '%%')})"
        groups[k.section].add_argument(k.flag, help=help, **kw)


def overrides(args: argparse.Namespace, root: type) -> dict[str, Any]:
    """The flags given on the command line, by key name."""
    given = {k.name: getattr(args, k.name) for k in keys(root)}
    return {name: value for name, value in given.items() if value is not None}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    return repr(value)


def render_toml(config: Any) -> str:
    """``config`` as a TOML file every key of which is explained by its help."""
    out = []
    for section in sections(type(config)):
        out.append(f"[{section}]")
        body = getattr(config, section)
        for k in keys(type(config)):
            if k.section == section:
                text = k.help.replace("`", "")
                out += textwrap.wrap(text, 88, initial_indent="# ", subsequent_indent="# ")
                out.append(f"{k.name} = {toml_value(getattr(body, k.name))}")
        out.append("")
    return "\n".join(out)


def render_markdown(root: type, section: str) -> str:
    """The docs table of one section: key, variable, flag, default, meaning."""
    rows = [
        "| Key | Env variable | Flag | Default | Meaning |",
        "|---|---|---|---|---|",
    ]
    for k in keys(root):
        if k.section != section:
            continue
        env, flag = f"`{k.env}`", f"`{k.flag}`"
        if k.type is bool:
            env += " (`1`/`true`/`yes`/`on`)"
            flag = f"`{k.flag}`, `--no-{k.flag[2:]}`"
        elif k.type is tuple:
            env += " (comma-separated)"
            flag = f"`{k.flag} {k.metavar}` (repeatable)"
        elif k.metavar:
            flag = f"`{k.flag} {k.metavar}`"
        default = f"`{toml_value(k.default)}`" + (f" ({k.info.note})" if k.info.note else "")
        rows.append(f"| `{k.name}` | {env} | {flag} | {default} | {k.help} |")
    return "\n".join(rows)
