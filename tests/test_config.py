"""Settings from the environment, `.env` and flags; bad values stop start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import Config, ConfigError


def test_development_defaults():
    config = Config.from_env({}, dotenv=None)
    assert config.environment == "development"
    assert not any([config.allow_websocket_auto_rooms, config.allow_websocket_auto_users,
                    config.allow_join_auto_rooms, config.allow_join_auto_users, config.require_tokens])
    assert config.cors_origins == ("*",)
    assert (config.host, config.port, config.db_path) == ("127.0.0.1", 8000, Path("chat.db"))
    assert (config.max_message_length, config.max_frame_bytes, config.rate_limit_per_second) == (4000, 65536, 20)


def test_production_turns_auto_creation_on_and_cors_off():
    config = Config.from_env({"ENVIRONMENT": "production", "REQUIRE_TOKENS": "true"}, dotenv=None)
    assert all([config.allow_websocket_auto_rooms, config.allow_websocket_auto_users,
                config.allow_join_auto_rooms, config.allow_join_auto_users])
    assert config.cors_origins == ()
    assert config.require_tokens is True


def test_production_needs_a_decision_about_tokens():
    with pytest.raises(ConfigError) as refused:
        Config.from_env({"ENVIRONMENT": "production"}, dotenv=None)
    assert str(refused.value).startswith("ENVIRONMENT=production needs REQUIRE_TOKENS set: true (recommended")
    assert "or false (only for old clients that send no token" in str(refused.value)
    # Either answer is a decision; old clients keep working with the second.
    assert Config.from_env({"ENVIRONMENT": "production", "REQUIRE_TOKENS": "false"}, dotenv=None).require_tokens is False
    assert Config(environment="production", require_tokens=True).require_tokens is True


def test_a_flag_overrides_the_environment_default():
    config = Config.from_env({"ENVIRONMENT": "production", "REQUIRE_TOKENS": "false", "ALLOW_WEBSOCKET_AUTO_ROOMS": "false",
                              "CORS_ORIGINS": "https://a.example, https://b.example/"}, dotenv=None)
    assert config.allow_websocket_auto_rooms is False and config.allow_join_auto_rooms is True
    assert config.cors_origins == ("https://a.example", "https://b.example")


def test_dotenv_is_read_and_the_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# settings\nexport PORT=9001\nLOG_LEVEL='debug'\nDATABASE_PATH=\"data/chat.db\"\n")
    config = Config.from_env({"PORT": "9002"}, dotenv=dotenv)
    assert (config.port, config.log_level, config.db_path) == (9002, "DEBUG", Path("data/chat.db"))


def test_flags_win_over_everything(tmp_path):
    config = Config.from_env({"PORT": "9002", "HOST": "0.0.0.0"}, dotenv=None, port=9003, db_path="x.db", host=None)
    assert (config.port, config.host, config.db_path) == (9003, "0.0.0.0", Path("x.db"))


@pytest.mark.parametrize("variable, value, message", [
    ("PORT", "abc", "PORT=abc: expected a whole number, 0 or more"),
    ("PORT", "70000", "PORT=70000: expected a port number from 1 to 65535"),
    ("ALLOW_JOIN_AUTO_ROOMS", "maybe", "ALLOW_JOIN_AUTO_ROOMS=maybe: expected true or false"),
    ("ENVIRONMENT", "staging", "ENVIRONMENT=staging: expected one of development, production"),
    ("RATE_LIMIT_PER_SECOND", "-1", "RATE_LIMIT_PER_SECOND=-1: expected a number, 0 or more"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL=LOUD: expected DEBUG, INFO, WARNING or ERROR"),
    ("CORS_ORIGIN_REGEX", "https://(", "CORS_ORIGIN_REGEX=https://(: not a regular expression"),
])
def test_bad_values_name_the_variable(variable, value, message):
    with pytest.raises(ConfigError) as refused:
        Config.from_env({variable: value}, dotenv=None)
    assert str(refused.value).startswith(message)


def test_a_malformed_dotenv_line_is_refused(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("PORT 8000\n")
    with pytest.raises(ConfigError, match=r"line 1: expected KEY=VALUE"):
        Config.from_env({}, dotenv=dotenv)


def test_allowed_hosts_are_names_without_ports():
    config = Config.from_env({"ALLOWED_HOSTS": "Chat.Example.com., 127.0.0.1 ,[::1]"}, dotenv=None)
    assert config.allowed_hosts == ("chat.example.com", "127.0.0.1", "[::1]")
    assert Config.from_env({}, dotenv=None).allowed_hosts == ()


@pytest.mark.parametrize("value, message", [
    ("chat.example.com:443", "ALLOWED_HOSTS=chat.example.com:443: expected host names without a port"),
    ("https://chat.example.com", "ALLOWED_HOSTS=https://chat.example.com: expected host names without a port"),
    ("::1", "ALLOWED_HOSTS=::1: expected host names without a port"),
])
def test_allowed_hosts_refuses_what_is_not_a_host_name(value, message):
    with pytest.raises(ConfigError) as refused:
        Config.from_env({"ALLOWED_HOSTS": value}, dotenv=None)
    assert str(refused.value).startswith(message)

