"""The [validation] section and System.rules are checked when the config is read."""
import pytest
from support import base_config

from gateway.config import ConfigError, parse


def test_validation_options_are_checked():
    cfg = base_config()
    cfg["validation"] = {"operator_authorisation": "maybe"}
    with pytest.raises(ConfigError, match="validation.operator_authorisation"):
        parse(cfg)
    cfg["validation"] = {"duplicate_order_window_hours": 0}
    with pytest.raises(ConfigError, match="validation.duplicate_order_window_hours"):
        parse(cfg)
    cfg["validation"] = {"operator_authorisation": "flag", "duplicate_order_window_hours": 48}
    v = parse(cfg).validation
    assert (v.operator_authorisation, v.duplicate_order_window_hours) == ("flag", 48)


def test_system_rules_name_known_codes_and_actions():
    cfg = base_config()
    cfg["systems"][0]["rules"] = {"DELTA-CHEK": "warn"}
    with pytest.raises(ConfigError, match="unknown rule code 'DELTA-CHEK'"):
        parse(cfg)
    cfg["systems"][0]["rules"] = {"DELTA-CHECK": "shout"}
    with pytest.raises(ConfigError, match="systems.0.rules|systems\\[0\\].rules"):
        parse(cfg)
    cfg["systems"][0]["rules"] = {"DELTA-CHECK": "off", "ORDER-DUPLICATE": "reject",
                                  "HAEMOLYSIS": "warn", "REAGENT-LOT-EXPIRED": "off"}
    parse(cfg)
