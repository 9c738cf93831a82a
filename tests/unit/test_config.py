"""Settings: precedence of the layers and one-line errors for bad values."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from click.testing import CliRunner

from fleet.cli import app
from fleet.config import Settings, load_settings, setting_names
from fleet.errors import ConfigError


@pytest.fixture()
def config_file(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("lease_s: 12\nnamespace: from-file\nqueues: [high, default]\n")
    return str(path)


def test_defaults_apply_when_nothing_is_given():
    """With no file, environment or flags every setting has its documented default."""
    settings, sources = load_settings({}, env={})
    assert settings == Settings()
    assert set(sources.values()) == {"default"}


def test_file_overrides_defaults(config_file):
    """A YAML file's values win over the defaults and are attributed to the file."""
    settings, sources = load_settings({}, config_file=config_file, env={})
    assert settings.lease_s == 12.0 and settings.queues == ("high", "default")
    assert sources["lease_s"] == f"file {config_file}"


def test_environment_overrides_file(config_file):
    """FLEET_* variables win over the file."""
    settings, sources = load_settings({}, config_file=config_file,
                                      env={"FLEET_LEASE_S": "7", "FLEET_QUEUES": "a,b"})
    assert settings.lease_s == 7.0 and settings.queues == ("a", "b")
    assert sources["lease_s"] == "env FLEET_LEASE_S"
    assert settings.namespace == "from-file"


def test_flags_override_environment(config_file):
    """Flags win over everything; None means a flag was not given."""
    settings, sources = load_settings({"lease_s": 3, "namespace": None},
                                      config_file=config_file, env={"FLEET_LEASE_S": "7"})
    assert settings.lease_s == 3.0 and sources["lease_s"] == "flag"
    assert settings.namespace == "from-file"


def test_config_file_can_come_from_the_environment(config_file):
    """FLEET_CONFIG names the file when --config is not given."""
    settings, _ = load_settings({}, env={"FLEET_CONFIG": config_file})
    assert settings.lease_s == 12.0


@pytest.mark.parametrize(("layer", "expected"), [
    ({"env": {"FLEET_LEASE_S": "-1"}}, "lease_s = '-1' (from FLEET_LEASE_S): must be > 0"),
    ({"env": {"FLEET_MAX_RETRIES": "x"}},
     "max_retries = 'x' (from FLEET_MAX_RETRIES): expected an integer"),
    ({"flags": {"fsync": "sometimes"}},
     "fsync = 'sometimes' (from --fsync): must be one of always, interval, off"),
    ({"flags": {"redis_url": "http://x"}}, "redis_url = 'http://x' (from --redis-url)"),
    ({"flags": {"metrics_port": 70000}}, "must be a port number"),
    ({"flags": {"namespace": "a:b"}}, "must be non-empty without braces"),
    ({"flags": {"worker_count": -2}}, "(from --count): must be >= 0"),
])
def test_bad_values_name_the_setting_and_source(layer, expected):
    """Each bad value is one line naming the setting, the value and where it came from."""
    with pytest.raises(ConfigError) as caught:
        load_settings(layer.get("flags", {}), env=layer.get("env", {}))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_file_value_names_the_file(tmp_path):
    """A bad value in the file names the file."""
    path = tmp_path / "bad.yaml"
    path.write_text("heartbeat_s: 0\n")
    with pytest.raises(ConfigError, match=r"heartbeat_s = 0 \(from .*bad.yaml\): must be > 0"):
        load_settings({}, config_file=str(path), env={})


@pytest.mark.parametrize(("text", "message"), [
    ("lease_s: [1, 2\n", "is not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
    ("lease: 3\n", "unknown setting(s) lease"),
])
def test_unusable_config_files_are_refused(tmp_path, text, message):
    """Invalid YAML, a non-mapping and unknown keys are one-line errors."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings({}, config_file=str(path), env={})


def test_missing_config_file_is_a_clear_error(tmp_path):
    """A config file that does not exist is named in the error."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings({}, config_file=str(tmp_path / "nope.yaml"), env={})


def test_default_yaml_documents_every_setting_with_its_default():
    """configs/default.yaml lists every setting, and its values are the built-in defaults."""
    with open("configs/default.yaml") as handle:
        documented = yaml.safe_load(handle)
    assert set(documented) == set(setting_names())
    settings, _ = load_settings({}, config_file="configs/default.yaml", env={})
    assert dataclasses.asdict(settings) == dataclasses.asdict(Settings())


def test_config_show_prints_values_and_sources(config_file, monkeypatch):
    """`fleet config show` prints each setting with its value and source."""
    monkeypatch.setenv("FLEET_HEARTBEAT_S", "0.5")
    result = CliRunner().invoke(app, ["config", "show", "--config", config_file])
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert "env FLEET_HEARTBEAT_S" in lines["heartbeat_s"]
    assert f"file {config_file}" in lines["lease_s"]
    assert lines["batch_size"].endswith("default")


def test_config_show_masks_the_redis_password_and_the_signing_key(monkeypatch):
    """`fleet config show` (text and --json) prints *** for the password and the key."""
    monkeypatch.setenv("FLEET_REDIS_URL", "rediss://alice:hunter2@redis.example:6380/0")
    monkeypatch.setenv("FLEET_SIGNING_KEY", "k" * 32)
    for args in (["config", "show"], ["config", "show", "--json"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "hunter2" not in result.output and "k" * 32 not in result.output
        assert "rediss://alice:***@redis.example:6380/0" in result.output
        assert '"***"' in result.output or "signing_key              ***" in result.output


def test_mask_url_hides_passwords_in_every_url_form():
    """user:password@, :password@ and ?password= are masked; a URL without one is kept."""
    from fleet.config import mask_url
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert mask_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("unix:///tmp/r.sock?password=pw&db=1") == \
        "unix:///tmp/r.sock?password=***&db=1"


def test_errors_about_the_redis_url_do_not_print_its_password():
    """A bad URL's error names it with the password masked, in settings and at connect."""
    from fleet.transport import connect
    with pytest.raises(ConfigError) as bad_scheme:
        load_settings({}, env={"FLEET_REDIS_URL": "http://alice:hunter2@h/0"})
    with pytest.raises(ConfigError) as bad_port:
        connect("redis://alice:hunter2@h:notaport/0")
    for caught in (bad_scheme, bad_port):
        assert "hunter2" not in str(caught.value) and "alice:***@h" in str(caught.value)
