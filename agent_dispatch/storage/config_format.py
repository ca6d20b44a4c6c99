"""The config file's format: YAML bytes to a validated Config and back (pure).

Errors name the dotted path of the bad value (`agents.x.timeout: ...`).
"""

from __future__ import annotations

import contextlib
from typing import Any, TypeVar

import msgspec
import yaml

from agent_dispatch.errors import ConfigError
from agent_dispatch.models import (
    MAX_NAME_LENGTH,
    NAME_HINT,
    AgentConfig,
    Config,
    Group,
    Settings,
    name_problem,
    shown_name,
    validation_message,
)

_TOP_LEVEL = ("agents", "groups", "settings")
_HEADER = b"# agent-dispatch config. Every field is described in agents.example.yaml.\n"
_T = TypeVar("_T")


# -- parsing --------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """safe_load, except that a key given twice in one mapping is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            with contextlib.suppress(TypeError):  # unhashable: the base class reports it
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_config(data: bytes, source: str = "agents.yaml") -> Config:
    """Parse and validate config bytes. Errors name the dotted path of the bad value."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{source}: not valid UTF-8 (byte 0x{data[exc.start]:02x} on line {line})",
            f"Save {source} as UTF-8 text.",
        ) from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "syntax error"
        message = f"{source}: invalid YAML{_where(exc)}: {problem}"
        raise ConfigError(message, _YAML_HINT) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        char = _char(exc.character)
        message = f"{source}: invalid YAML on line {line}: character {char} is not allowed"
        raise ConfigError(message, _YAML_HINT) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{source}: invalid YAML: {' '.join(str(exc).split())}", _YAML_HINT
        ) from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply", _YAML_HINT) from None
    if raw is None:  # an empty or comment-only file
        return Config()
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping with agents, groups and settings,"
            f" got {_type_name(raw)}"
        )
    for key in raw:
        if key not in _TOP_LEVEL:
            raise ConfigError(
                f"{source}: unknown top-level field {_show(key)} (expected {', '.join(_TOP_LEVEL)})"
            )
    agents = {
        name: _convert(value, AgentConfig, f"agents.{name}")
        for name, value in _named_section(raw, "agents", "agent").items()
    }
    for name, agent in agents.items():
        if "\0" in agent.directory:
            raise ConfigError(f"agents.{name}.directory: must not contain a NUL character")
    groups = {
        name: _convert(value, Group, f"groups.{name}")
        for name, value in _named_section(raw, "groups", "group").items()
    }
    for name, group in groups.items():
        for i, member in enumerate(group.members):
            if (why := name_problem(member.agent)) is not None:
                raise ConfigError(
                    f"groups.{name}.members[{i}].agent: invalid agent name"
                    f" {shown_name(member.agent)} ({why})"
                )
    settings_raw = raw.get("settings")
    settings = Settings() if settings_raw is None else _convert(settings_raw, Settings, "settings")
    return Config(agents=agents, groups=groups, settings=settings)


_YAML_HINT = "Check the indentation and quoting near that spot; see agents.example.yaml."


def _where(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


def _named_section(raw: dict[Any, Any], section: str, kind: str) -> dict[str, Any]:
    value = raw.get(section)
    if value is None:  # `agents:` with every entry commented out
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{section}: expected a mapping of {kind} names, got {_type_name(value)}")
    for name in value:
        if not isinstance(name, str):
            raise ConfigError(
                f"{section}: {kind} name {name!r} must be a string, not {_type_name(name)}",
                'Quote names that YAML reads as numbers or booleans, e.g. "123" or "on".',
            )
        if (problem := name_problem(name)) is not None:
            raise ConfigError(
                f"{section}.{_show_name(name)}: invalid {kind} name ({problem})",
                f"Rename it. {NAME_HINT}",
            )
    return value


def _convert(value: Any, type_: type[_T], path: str) -> _T:
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise ConfigError(validation_message(str(exc), path)) from None


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {"dict": "mapping", "tuple": "list"}.get(type(value).__name__, type(value).__name__)


def _char(char: object) -> str:
    return f"U+{char:04X}" if isinstance(char, int) else repr(char)


def _show_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        return shown_name(name)
    return name if name.isprintable() else repr(name)


def _show(key: object) -> str:
    return f'"{key}"' if isinstance(key, str) else repr(key)


# -- dumping --------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line text (instructions) reads best as a literal block; the emitter
    # falls back to a quoted style whenever a block could not round-trip.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_config(cfg: Config) -> bytes:
    """YAML for `cfg`, fields in schema order, defaults omitted; `parse_config` inverts it.

    Tri-state tool lists survive: None is omitted (read back as None), () is `[]`.
    """
    data: dict[str, Any] = _plain(cfg, {})
    out: dict[str, Any] = {"agents": data.get("agents", {})}
    out.update((k, v) for k, v in data.items() if k != "agents")
    text = yaml.dump(
        out,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return _HEADER + text.encode("utf-8")


def _plain(value: Any, fields_of: dict[type, tuple[msgspec.structs.FieldInfo, ...]]) -> Any:
    """Builtins for YAML; `fields_of` keeps each Struct type's fields for this one dump
    (msgspec resolves the annotations on every `fields` call: most of a dump's time)."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        kind = type(value)
        fields = fields_of.get(kind)
        if fields is None:
            fields = fields_of[kind] = msgspec.structs.fields(kind)
        for field in fields:
            item = getattr(value, field.name)
            if field.default is not msgspec.NODEFAULT:
                default = field.default
            elif field.default_factory is not msgspec.NODEFAULT:
                default = field.default_factory()
            else:
                out[field.encode_name] = _plain(item, fields_of)
                continue
            if item is default or (type(item) is type(default) and item == default):
                continue
            numbers = (int, float)
            if type(item) in numbers and type(default) in numbers and item == default:
                continue  # 300 vs 300.0
            out[field.encode_name] = _plain(item, fields_of)
        return out
    if isinstance(value, dict):
        return {k: _plain(v, fields_of) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, fields_of) for v in value]
    return value
