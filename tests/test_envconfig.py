"""One policy for settings from the environment: argument > environment > default, and a bad
value names its variable (servers refuse to start; the SDK logs it and keeps the default)."""

from __future__ import annotations

import logging

import pytest

from aethermind.envconfig import SettingError, env_setting, parse_bool, parse_float, parse_list
from aethermind.exporter.config import ENV_CAPTURE_CONTENT, ExporterConfig
from aethermind.receiver.config import ReceiverConfig, ReceiverConfigError


def test_the_helper_parses_or_names_the_variable() -> None:
    env = {"A": " yes ", "B": "", "C": "1.5", "D": "a, b,,c", "E": "maybe"}
    assert env_setting(env, "A", parse_bool) is True
    assert env_setting(env, "B", parse_bool) is None  # blank is unset
    assert env_setting(env, "MISSING", parse_bool) is None
    assert env_setting(env, "C", parse_float) == 1.5
    assert env_setting(env, "D", parse_list) == ("a", "b", "c")
    with pytest.raises(SettingError, match="E='maybe'"):
        env_setting(env, "E", parse_bool)
    with pytest.raises(SettingError, match="finite"):
        env_setting({"F": "nan"}, "F", parse_float)


def test_the_receiver_refuses_a_bad_value_and_argument_beats_environment() -> None:
    with pytest.raises(ReceiverConfigError, match="AETHERMIND_READ_TIMEOUT_SECONDS"):
        ReceiverConfig.from_env({"AETHERMIND_READ_TIMEOUT_SECONDS": "soon"})
    env = {"AETHERMIND_PORT": "9000", "AETHERMIND_AUTH_TIMEOUT_SECONDS": "2.5"}
    assert ReceiverConfig.from_env(env).port == 9000
    assert ReceiverConfig.from_env(env, port=9100).port == 9100
    assert ReceiverConfig.from_env(env).auth_timeout_seconds == 2.5
    assert ReceiverConfig.from_env({}).read_timeout_seconds == 10.0


def test_the_sdk_logs_a_bad_value_and_keeps_the_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_CAPTURE_CONTENT, "sometimes")
    with caplog.at_level(logging.WARNING):
        config = ExporterConfig.resolve("aether_x_y", "http://localhost:4318")
    assert config.capture_content is False
    assert ENV_CAPTURE_CONTENT in caplog.text
