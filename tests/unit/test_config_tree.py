"""One settings tree: loaded in one place, overridden by SCRM__ variables, shown masked."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from settings import SettingsError, env_overrides, load_settings
from settings.show import effective, masked
from tests.support import REPO


def test_overrides_use_one_prefix_and_nest_by_double_underscore() -> None:
    env = {
        "SCRM__SERVING__PORT": "8001",
        "SCRM__CHANNELS__MQTT__ENABLED": "true",
        "SCRM__FEATURES__ONLINE_STORE": "redis://127.0.0.1:6379/0",
        "SCRM_WECOM_TOKEN": "a secret, not a setting",
    }
    assert env_overrides(env) == {
        "serving": {"port": 8001},
        "channels": {"mqtt": {"enabled": True}},
        "features": {"online_store": "redis://127.0.0.1:6379/0"},
    }
    settings = load_settings(REPO, environ=env)
    assert settings.serving.port == 8001 and settings.channels.mqtt.enabled is True
    assert settings.online_store == "redis://127.0.0.1:6379/0"
    assert settings.serving.models["intent"].required  # the rest is params.yaml's


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCRM__SERVING__PORT": "eighty"}, "serving.port: Input should be a valid integer"),
        ({"SCRM__SERVING__NO_SUCH": "1"}, "serving.no_such: Extra inputs are not permitted"),
        ({"SCRM__SERVING____PORT": "1"}, "empty level"),
    ],
)
def test_a_bad_override_is_one_line_naming_the_key(env, message) -> None:
    with pytest.raises(SettingsError, match=message) as error:
        load_settings(REPO, environ=env)
    assert "\n" not in str(error.value)


def test_show_masks_url_passwords_and_secret_values_and_reports_secret_variables() -> None:
    assert masked({"url": "redis://:hunter2@host:6379/0", "client_secret": "s3cr3t",
                   "api_keys_file": "data/privacy/api_keys.json"}) == {
        "url": "redis://:****@host:6379/0", "client_secret": "****",
        "api_keys_file": "data/privacy/api_keys.json"}  # fmt: skip
    shown = effective(load_settings(REPO, environ={}))
    assert shown["_environment"]["secrets"]["SCRM_JWT_SECRET"] in ("set", "unset")
    assert "hunter2" not in json.dumps(shown)


def test_scrm_config_show_prints_a_section_and_refuses_an_unknown_one(monkeypatch) -> None:
    monkeypatch.setenv("SCRM_ROOT", str(REPO))
    monkeypatch.setenv("SCRM__SERVING__MAX_ITEMS", "7")
    shown = CliRunner().invoke(app, ["config", "show", "serving", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["max_items"] == 7
    unknown = CliRunner().invoke(app, ["config", "show", "nothing"])
    assert unknown.exit_code == 1 and "no section 'nothing'" in unknown.stderr


def test_the_strict_base_is_defined_once() -> None:
    found = []
    for path in REPO.rglob("*.py"):
        if {".venv", "tests"} & set(path.parts) or not path.is_relative_to(REPO):
            continue
        if "class Strict(" in path.read_text(encoding="utf-8"):
            found.append(str(path.relative_to(REPO)))
    assert found == ["settings/base.py"]


def test_a_subset_of_the_models_can_be_served() -> None:
    settings = load_settings(REPO, environ={"SCRM__SERVING__ONLY": "[intent, sentiment]"})
    assert list(settings.serving.models) == ["intent", "sentiment"]
    assert settings.serving.analyze == {"intent": "intent", "sentiment": "sentiment"}
    with pytest.raises(SettingsError, match="only names models not in serving.models: nope"):
        load_settings(REPO, environ={"SCRM__SERVING__ONLY": "[nope]"})
