"""The one settings model: YAML, then N1V1_* environment, then explicit overrides; strict keys."""

from __future__ import annotations

import pytest

from n1v1.config import ConfigError, InstrumentSpec, Settings, load_settings


def write(tmp_path, text: str):
    path = tmp_path / "n1v1.yaml"
    path.write_text(text)
    return path


def test_defaults_are_valid_and_documented_values():
    s = Settings()
    assert s.execution.fill == "next_open"
    assert s.execution.taker_fee == 0.001 and s.backtest.cash == 10_000
    assert s.risk.allow_short is False and s.risk.sizing == "fraction"


def test_unknown_key_names_the_full_path_and_suggests_the_closest(tmp_path):
    path = write(tmp_path, "risk:\n  max_drawdwon: 0.2\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert str(err.value) == "risk.max_drawdwon: unknown key; did you mean max_drawdown?"


def test_unknown_top_level_and_nested_keys_are_all_reported(tmp_path):
    path = write(tmp_path, "riks: {}\nexecution:\n  default_instrument:\n    lot_sise: 1\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    lines = str(err.value).splitlines()
    assert "riks: unknown key; did you mean risk?" in lines
    assert "execution.default_instrument.lot_sise: unknown key; did you mean lot_size?" in lines


def test_out_of_range_value_names_the_key(tmp_path):
    path = write(tmp_path, "execution:\n  taker_fee: 0.5\n")
    with pytest.raises(ConfigError, match=r"^execution\.taker_fee: Input should be less than 0\.1"):
        load_settings(path, env={})


def test_env_overrides_yaml_and_overrides_beat_env(tmp_path):
    path = write(tmp_path, "risk:\n  max_drawdown: 0.3\nbacktest:\n  cash: 500\n")
    env = {"N1V1_RISK__MAX_DRAWDOWN": "0.2", "N1V1_EXECUTION__FILL": "close", "HOME": "/x"}
    s = load_settings(path, env=env, overrides={"backtest.cash": 750})
    assert s.risk.max_drawdown == 0.2
    assert s.execution.fill == "close"
    assert s.backtest.cash == 750


def test_env_typo_is_an_error_too():
    with pytest.raises(
        ConfigError, match=r"risk\.stop_los_pct: unknown key; did you mean stop_loss_pct\?"
    ):
        load_settings(env={"N1V1_RISK__STOP_LOS_PCT": "0.1"})


def test_cross_field_rules_name_the_key():
    with pytest.raises(ConfigError, match=r"risk\.qty: required when risk\.sizing is 'fixed'"):
        load_settings(env={}, overrides={"risk.sizing": "fixed"})
    with pytest.raises(ConfigError, match=r"risk\.take_profit_r: needs a stop"):
        load_settings(env={}, overrides={"risk.take_profit_r": 2})
    with pytest.raises(ConfigError, match=r"risk\.flatten_on_breach: needs a limit to breach"):
        load_settings(env={}, overrides={"risk.flatten_on_breach": True})


def test_missing_or_malformed_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"), env={})


def test_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    # line 3 is "  stop_loss_pct: 0.05: x"; the second ": " is at character 22 (2 spaces +
    # "stop_loss_pct" (13) + ": " (2) + "0.05" (4) = 21 characters before it)
    path = write(tmp_path, "risk:\n  max_drawdown: 0.2\n  stop_loss_pct: 0.05: x\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == f"{path}:3:22: invalid YAML: mapping values are not allowed here"


def test_yaml_error_inside_a_block_names_where_the_block_starts(tmp_path):
    path = write(tmp_path, "risk:\n  - a\n b: 1\n")  # " b" (line 3, column 2) breaks the block
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == (
        f"{path}:3:2: invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping that starts on line 1)"
    )


def test_duplicate_keys_are_errors_not_silently_overwritten(tmp_path):
    # PyYAML alone would keep only the second risk block, dropping max_drawdown without a word.
    path = write(tmp_path, "risk:\n  max_drawdown: 0.2\nbacktest:\n  cash: 5\nrisk:\n  qty: 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert (
        str(info.value) == f"{path}:5:1: invalid YAML: duplicate key 'risk' (first given on line 1)"
    )
    path = write(tmp_path, "backtest: {cash: 1, cash: 2}\n")  # the second "cash" is at column 21
    with pytest.raises(ConfigError, match=r":1:21: invalid YAML: duplicate key 'cash'"):
        load_settings(path, env={})
    # a merge key may be overridden: that is what it is for
    path = write(tmp_path, "backtest:\n  <<: {cash: 5, run_id: a}\n  cash: 7\n")
    assert load_settings(path, env={}).backtest.cash == 7


def test_a_file_that_is_not_utf8_text_names_the_byte(tmp_path):
    path = tmp_path / "n1v1.yaml"
    path.write_bytes(b"backtest:\n  run_id: caf\xe9\n")  # Latin-1 e-acute on line 2, column 14
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == f"{path}:2:14: not UTF-8 text (byte 0xe9)"
    path.write_bytes(b"backtest:\n  run_id: a\x01\n")  # a control character YAML refuses
    with pytest.raises(ConfigError, match=r":2:12: invalid YAML: special characters are not"):
        load_settings(path, env={})


def test_per_symbol_instrument_rules_then_the_bundled_table_then_the_default():
    s = load_settings(
        env={},
        overrides={
            "execution.instruments": {"BTC/USD": {"lot_size": 0.001}},
            "execution.default_instrument": {"min_notional": 2.0},
        },
    )
    assert s.execution.instrument("BTC/USD") == InstrumentSpec(lot_size=0.001)  # configured
    assert s.execution.instrument("ETH/USD") == InstrumentSpec(lot_size=1e-8, min_notional=1.0)
    assert s.execution.instrument("BTC/USDT") == InstrumentSpec(lot_size=1e-5, min_notional=5.0)
    assert s.execution.instrument("XRP/USD") == InstrumentSpec(min_notional=2.0)  # the default
