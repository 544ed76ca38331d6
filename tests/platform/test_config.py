"""Settings: parsing the environment, refusing to start when a setting is missing or wrong,
and the trusted hosts that keep forged Host headers out."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service import create_app
from service.platform.config import ConfigError, load_config
from tests.conftest import PRODUCTION_SERVICES
from tests.conftest import test_settings as settings_for

PRODUCTION = {
    "APP_ENV": "production",
    "SECRET_KEY": "a-long-random-production-secret-for-tests",
    "PUBLIC_BASE_URL": "https://account.example.com",
    **{name: str(value) for name, value in PRODUCTION_SERVICES.items()},
}


def load(tmp_path: Path, environ: dict[str, str], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """load_config with a secret set unless the test says otherwise (no dev-key warning)."""
    return load_config(environ={"SECRET_KEY": "s3cret", **environ}, overrides=overrides, instance_path=tmp_path)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " True "])
def test_bool_settings_read_true_words(tmp_path: Path, raw: str) -> None:
    assert load(tmp_path, {"MAIL_USE_TLS": raw})["MAIL_USE_TLS"] is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off", ""])
def test_bool_settings_read_false_words(tmp_path: Path, raw: str) -> None:
    assert load(tmp_path, {"RATELIMIT_ENABLED": raw})["RATELIMIT_ENABLED"] is False


def test_bool_setting_refuses_other_words_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MAIL_USE_SSL"):
        load(tmp_path, {"MAIL_USE_SSL": "maybe"})


def test_int_settings_are_parsed(tmp_path: Path) -> None:
    settings = load(tmp_path, {"MAIL_PORT": " 587 ", "RESET_TOKEN_MAX_AGE": "900", "PASSWORD_MIN_LENGTH": "12"})
    assert settings["MAIL_PORT"] == 587
    assert settings["RESET_TOKEN_MAX_AGE"] == 900
    assert settings["PASSWORD_MIN_LENGTH"] == 12


def test_int_setting_refuses_words_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LOGIN_MAX_FAILURES"):
        load(tmp_path, {"LOGIN_MAX_FAILURES": "ten"})


def test_tuple_settings_split_on_commas_and_drop_blanks(tmp_path: Path) -> None:
    settings = load(tmp_path, {"SECRET_KEY_FALLBACKS": " old-key-1 , ,old-key-2,"})
    assert settings["SECRET_KEY_FALLBACKS"] == ("old-key-1", "old-key-2")


def test_an_empty_tuple_setting_is_empty(tmp_path: Path) -> None:
    assert load(tmp_path, {"SECRET_KEY_FALLBACKS": " , "})["SECRET_KEY_FALLBACKS"] == ()


def test_unset_settings_keep_their_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, {})
    assert settings["APP_ENV"] == "development"
    assert settings["PASSWORD_MIN_LENGTH"] == 15
    assert settings["LOGIN_MAX_FAILURES"] == 10
    assert settings["RESET_METHOD"] == "link"
    assert settings["RATELIMIT_STORAGE_URI"] == "memory://"
    assert settings["PUBLIC_BASE_URL"] == "http://localhost:5000"


def test_overrides_win_over_the_environment(tmp_path: Path) -> None:
    settings = load(tmp_path, {"PASSWORD_MIN_LENGTH": "20"}, overrides={"PASSWORD_MIN_LENGTH": 9})
    assert settings["PASSWORD_MIN_LENGTH"] == 9


def test_settings_unknown_to_the_service_are_ignored(tmp_path: Path) -> None:
    assert "HOME_DIRECTORY_OF_NOBODY" not in load(tmp_path, {"HOME_DIRECTORY_OF_NOBODY": "/x"})


def test_embedded_database_lives_in_the_instance_folder(tmp_path: Path) -> None:
    settings = load(tmp_path, {})
    assert settings["DATABASE_EMBEDDED"] is True
    assert settings["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{(tmp_path / 'service.db').resolve()}"


def test_a_database_url_is_used_as_given(tmp_path: Path) -> None:
    settings = load(tmp_path, {"DATABASE_URL": "postgresql+psycopg://u@db.example/shop"})
    assert settings["DATABASE_EMBEDDED"] is False
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db.example/shop"


def test_a_server_database_tests_pooled_connections_before_use(tmp_path: Path) -> None:
    options = load(tmp_path, {"DATABASE_URL": "postgresql+psycopg://u@db.example/shop"})["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_pre_ping"] is True
    assert options["pool_size"] == 5


def test_a_sqlite_file_is_not_pinged_on_every_checkout(tmp_path: Path) -> None:
    # A file cannot drop a connection; a "SELECT 1" per request would only cost time.
    assert "pool_pre_ping" not in load(tmp_path, {})["SQLALCHEMY_ENGINE_OPTIONS"]
    assert "pool_pre_ping" not in load(tmp_path, {"DATABASE_URL": "sqlite:///x.db"})["SQLALCHEMY_ENGINE_OPTIONS"]


def test_bodies_are_capped_at_64_kib(tmp_path: Path) -> None:
    assert load(tmp_path, {})["MAX_CONTENT_LENGTH"] == 64 * 1024


def test_production_starts_with_its_required_settings(tmp_path: Path) -> None:
    settings = load_config(environ=PRODUCTION, instance_path=tmp_path)
    assert settings["SECRET_KEY"] == PRODUCTION["SECRET_KEY"]
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["TESTING"] is False


@pytest.mark.parametrize("missing", ["SECRET_KEY", "PUBLIC_BASE_URL"])
def test_production_refuses_to_start_without_a_required_setting(tmp_path: Path, missing: str) -> None:
    environ = {name: value for name, value in PRODUCTION.items() if name != missing}
    with pytest.raises(ConfigError) as raised:
        load_config(environ=environ, instance_path=tmp_path)
    assert missing in str(raised.value)


@pytest.mark.parametrize("missing", ["SECRET_KEY", "PUBLIC_BASE_URL"])
def test_production_refuses_a_blank_required_setting(tmp_path: Path, missing: str) -> None:
    with pytest.raises(ConfigError, match=missing):
        load_config(environ={**PRODUCTION, missing: "   "}, instance_path=tmp_path)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"MAIL_SERVER": ""}, "MAIL_SERVER"),
        ({"RATELIMIT_STORAGE_URI": "memory://"}, "RATELIMIT_STORAGE_URI"),
        ({"WEBHOOK_SECRET": "whsec_not*base64!"}, "WEBHOOK_SECRET"),
        ({"WEBHOOK_SECRET": "a plain shared secret of some length"}, "WEBHOOK_SECRET"),
        ({"LOGO_URL": "http://cdn.example.com/logo.png"}, "LOGO_URL"),
    ],
    ids=["no-mail-server", "memory-limits", "bad-base64-secret", "secret-without-prefix", "plain-http-logo"],
)
def test_production_refuses_what_would_leak_or_loosen(tmp_path: Path, change: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as raised:
        load_config(environ={**PRODUCTION, **change}, instance_path=tmp_path)
    assert "set" in str(raised.value)


@pytest.mark.parametrize("env", ["development", "testing", "production"])
@pytest.mark.parametrize("name", ["RATELIMIT_RESET_PER_IP", "RATELIMIT_RESET_PER_USERNAME", "RATELIMIT_TOKEN_PER_IP", "RATELIMIT_PAGES_PER_IP"])
@pytest.mark.parametrize("limit", ["10/fortnight", "ten per minute", "10/minute,x", ""])
def test_a_malformed_rate_limit_stops_the_start_in_every_profile(tmp_path: Path, env: str, name: str, limit: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config(environ={**PRODUCTION, "APP_ENV": env, name: limit}, instance_path=tmp_path)


@pytest.mark.parametrize("env", ["development", "testing"])
@pytest.mark.parametrize("secret", ["whsec_", "whsec_%%%%", "whsec_" + "QUJD", "plain-secret"])
def test_a_malformed_webhook_secret_stops_the_start_in_every_profile(tmp_path: Path, env: str, secret: str) -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        load_config(environ={**PRODUCTION, "APP_ENV": env, "WEBHOOK_SECRET": secret}, instance_path=tmp_path)


def test_good_limits_and_a_standard_webhooks_secret_are_accepted(tmp_path: Path) -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    settings = load_config(
        environ={**PRODUCTION, "RATELIMIT_RESET_PER_IP": "5 per minute; 50/hour", "WEBHOOK_SECRET": secret},
        instance_path=tmp_path,
    )
    assert settings["WEBHOOK_SECRET"] == secret


@pytest.mark.parametrize("logo", ["https://cdn.example.com/logo.png", "/static/logo.png"])
def test_production_takes_a_logo_over_https_or_from_this_site(tmp_path: Path, logo: str) -> None:
    assert load_config(environ={**PRODUCTION, "LOGO_URL": logo}, instance_path=tmp_path)["LOGO_URL"] == logo


def test_development_takes_a_logo_over_plain_http(tmp_path: Path) -> None:
    assert load(tmp_path, {"LOGO_URL": "http://localhost:8080/logo.png"})["LOGO_URL"] == "http://localhost:8080/logo.png"


def test_production_refuses_to_start_through_create_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({"APP_ENV": "production", "PUBLIC_BASE_URL": "https://account.example.com", **PRODUCTION_SERVICES})


def test_development_without_a_secret_key_says_so_and_uses_a_random_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.platform.config"):
        first = load_config(environ={}, instance_path=tmp_path)
        second = load_config(environ={}, instance_path=tmp_path)
    said = [record.getMessage() for record in caplog.records if "SECRET_KEY" in record.getMessage()]
    assert len(said) == 2 and "random key" in said[0]
    assert len(first["SECRET_KEY"]) >= 32
    assert first["SECRET_KEY"] != second["SECRET_KEY"]


def test_a_cli_command_in_development_says_the_key_is_random_in_one_plain_line(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TEST_", "DATABASE_", "FLASK_", "SECRET_"))}
    env.update(APP_ENV="development", DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}", PYTHONWARNINGS="default")
    project = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "routes"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(project)}, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len([line for line in lines if "SECRET_KEY" in line]) == 1, done.stderr
    assert not [line for line in lines if "Warning" in line or line.startswith(" ")], done.stderr


@pytest.mark.parametrize("url", ["javascript:alert(1)", "shop.example.com/login", "ftp://shop.example.com/"])
def test_a_sign_in_url_that_is_no_web_address_stops_the_start(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="SIGN_IN_URL"):
        load(tmp_path, {"SIGN_IN_URL": url})


@pytest.mark.parametrize("url", ["https://shop.example.com/login", "http://localhost:8000/sign-in", ""])
def test_a_sign_in_url_on_the_web_or_none_is_accepted(tmp_path: Path, url: str) -> None:
    assert load(tmp_path, {"SIGN_IN_URL": url})["SIGN_IN_URL"] == url


@pytest.mark.parametrize("length", ["7", "0", "-1"])
def test_password_min_length_below_8_is_refused(tmp_path: Path, length: str) -> None:
    with pytest.raises(ConfigError, match="PASSWORD_MIN_LENGTH"):
        load(tmp_path, {"PASSWORD_MIN_LENGTH": length})


def test_password_min_length_of_8_is_allowed(tmp_path: Path) -> None:
    assert load(tmp_path, {"PASSWORD_MIN_LENGTH": "8"})["PASSWORD_MIN_LENGTH"] == 8


def test_password_min_length_override_below_8_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PASSWORD_MIN_LENGTH"):
        load(tmp_path, {}, overrides={"PASSWORD_MIN_LENGTH": 6})


def test_cheap_password_hashes_are_refused_in_production(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PASSWORD_HASH_CHEAP"):
        load_config(environ={**PRODUCTION, "PASSWORD_HASH_CHEAP": "true"}, instance_path=tmp_path)


def test_cheap_password_hashes_are_allowed_in_testing(tmp_path: Path) -> None:
    settings = load(tmp_path, {"APP_ENV": "testing", "PASSWORD_HASH_CHEAP": "true"})
    assert settings["PASSWORD_HASH_CHEAP"] is True


@pytest.mark.parametrize("env", ["prod", "Production", "staging", ""])
def test_unknown_app_env_is_refused(tmp_path: Path, env: str) -> None:
    with pytest.raises(ConfigError, match="APP_ENV"):
        load(tmp_path, {"APP_ENV": env})


@pytest.mark.parametrize("url", ["ftp://account.example.com", "account.example.com", "https://"])
def test_public_base_url_must_be_an_http_origin(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        load(tmp_path, {"PUBLIC_BASE_URL": url})


def test_trusted_hosts_come_from_public_base_url_in_production(tmp_path: Path) -> None:
    settings = load_config(environ={**PRODUCTION, "PUBLIC_BASE_URL": "https://Account.Example.com/"}, instance_path=tmp_path)
    assert settings["TRUSTED_HOSTS"] == ["account.example.com"]
    assert settings["PUBLIC_BASE_URL"] == "https://Account.Example.com"
    assert settings["PREFERRED_URL_SCHEME"] == "https"


def test_extra_trusted_hosts_are_added_to_the_public_one(tmp_path: Path) -> None:
    settings = load_config(
        environ={**PRODUCTION, "TRUSTED_HOSTS": "internal.example.com"}, instance_path=tmp_path
    )
    assert set(settings["TRUSTED_HOSTS"]) == {"account.example.com", "internal.example.com"}


def test_development_also_trusts_loopback_hosts(tmp_path: Path) -> None:
    settings = load(tmp_path, {"PUBLIC_BASE_URL": "https://account.example.com"})
    assert {"account.example.com", "localhost", "127.0.0.1"} <= set(settings["TRUSTED_HOSTS"])


@pytest.fixture
def production_app(tmp_path: Path) -> Any:
    """A production app (real hashes, no test mode) whose public origin is account.example.com."""
    app = create_app({**PRODUCTION, "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}", "OUTBOX_DISPATCH": "external"})
    yield app
    with app.app_context():
        from service.platform.extensions import db

        db.engine.dispose()


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/auth/verify", "/reset-password"])
def test_a_forged_host_header_is_refused_with_400(production_app: Any, path: str) -> None:
    response = production_app.test_client().get(path, headers={"Host": "evil.example"})
    assert response.status_code == 400


def test_a_forged_host_header_on_the_api_gets_problem_json(production_app: Any) -> None:
    response = production_app.test_client().post(
        "/api/v1/auth/verify", json={"username": "jane", "password": "x"}, headers={"Host": "evil.example"}
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_the_public_host_is_served(production_app: Any) -> None:
    response = production_app.test_client().get("/healthz", headers={"Host": "account.example.com"})
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_production_does_not_trust_localhost(production_app: Any) -> None:
    response = production_app.test_client().get("/healthz", headers={"Host": "localhost"})
    assert response.status_code == 400


def test_testing_app_refuses_a_forged_host_too(tmp_path: Path) -> None:
    app = create_app(settings_for(f"sqlite:///{tmp_path / 't.db'}", PUBLIC_BASE_URL="https://account.example.com"))
    client = app.test_client()
    assert client.get("/healthz", headers={"Host": "account.example.com"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400


def test_production_answers_add_hsts_once(production_app: Any) -> None:
    response = production_app.test_client().get("/healthz", base_url="https://account.example.com")
    assert response.headers.getlist("Strict-Transport-Security") == ["max-age=31536000; includeSubDomains"]
    assert response.headers.get("X-Frame-Options") == "DENY"
