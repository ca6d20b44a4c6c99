"""config_format.py: the one name rule (pattern and length) as the config file applies it."""

from __future__ import annotations

import pytest
import yaml

from agent_dispatch.errors import ConfigError, InvalidArgument
from agent_dispatch.models import MAX_NAME_LENGTH, check_name, is_valid_name
from agent_dispatch.storage.config_format import parse_config

LONGEST = "a" * MAX_NAME_LENGTH
TOO_LONG = "b" * (MAX_NAME_LENGTH + 1)


def config(agents: list[str], groups: dict[str, list[str]] | None = None) -> bytes:
    return yaml.safe_dump(
        {
            "agents": {name: {"directory": "/x"} for name in agents},
            "groups": {
                name: {"members": [{"agent": m} for m in members]}
                for name, members in (groups or {}).items()
            },
        }
    ).encode()


def test_a_name_of_the_maximum_length_is_accepted_everywhere() -> None:
    cfg = parse_config(config([LONGEST], {LONGEST: [LONGEST]}))
    assert list(cfg.agents) == [LONGEST] and list(cfg.groups) == [LONGEST]


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (config([TOO_LONG]), "agents."),
        (config(["ok"], {TOO_LONG: ["ok"]}), "groups."),
        (config(["ok"], {"team": ["ok", TOO_LONG]}), "groups.team.members[1].agent: invalid"),
    ],
)
def test_a_name_over_the_limit_is_a_config_error_that_gives_the_limit(
    data: bytes, where: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    message = info.value.message
    assert message.startswith(where), message
    assert f"{MAX_NAME_LENGTH + 1} characters long, at most {MAX_NAME_LENGTH}" in message
    assert len(message) < 250  # the name is quoted cut, not whole


def test_a_5000_character_name_is_refused_with_a_short_message() -> None:
    name = "n" * 5000
    assert not is_valid_name(name)
    with pytest.raises(InvalidArgument) as info:
        check_name(name)
    assert info.value.message.startswith(f"name: invalid name {'n' * MAX_NAME_LENGTH!r}...")
    assert info.value.message.endswith("(5000 characters long, at most 64)")
    assert "at most 64 characters" in info.value.hint
