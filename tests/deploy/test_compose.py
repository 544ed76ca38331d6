"""docker-compose.yml and the Dockerfile wire the production profile: every setting they pass is
one the service reads, every command they run exists, the image holds what the service needs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from gunicorn.config import Config as GunicornConfig
from werkzeug.serving import make_server

from service import create_app
from service.platform.config import DEFAULTS, load_config
from service.platform.extensions import db
from service.worker.dispatcher import Dispatcher
from tests.conftest import PRODUCTION_SERVICES
from tests.conftest import test_settings as settings_for

PROJECT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = (PROJECT / "gunicorn.conf.py").read_text()
# Read by gunicorn.conf.py rather than by the service's settings.
GUNICORN_SETTINGS = {"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"}
RUNTIME_PATHS = ("service", "templates", "static", "migrations", "wsgi.py", "gunicorn.conf.py")
APP_SERVICES = ("migrate", "web", "worker")
HEARTBEAT = "/tmp/outbox-heartbeat"
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # safe_load resolves the x-service-env anchor and its `<<` merges.
    return yaml.safe_load((PROJECT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, comments and blank lines dropped."""
    lines = []
    for raw in (PROJECT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            lines.append((instruction.upper(), arguments.strip()))
    return lines


def service_environment(compose: dict[str, Any], name: str) -> dict[str, str]:
    environment = compose["services"][name].get("environment", {})
    assert isinstance(environment, dict), f"{name}: environment as a mapping, so the anchor merges"
    return {key: str(value) for key, value in environment.items()}


def interpolated(value: str) -> str:
    """The value compose would pass with no .env: `${X:-default}` gives the default,
    `${X:?message}` (a required setting) a stand-in."""

    def replace(match: re.Match[str]) -> str:
        name, kind, word = match.groups()
        if kind == "-":
            return word
        return f"stand-in-{name.lower()}-0123456789abcdef"

    return INTERPOLATION.sub(replace, value)


def test_the_six_services_are_there(compose: dict[str, Any]) -> None:
    assert {"migrate", "web", "worker", "postgres", "redis", "mailpit"} <= set(compose["services"])


def test_the_gunicorn_variables_are_really_read_by_gunicorn_conf() -> None:
    for name in GUNICORN_SETTINGS:
        assert f'"{name}"' in GUNICORN_CONF, name
    assert re.findall(r'"(GUNICORN_\w+)"', GUNICORN_CONF), "gunicorn.conf.py reads no GUNICORN_* variable"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_variable_passed_to_web_and_worker_is_a_setting_that_is_read(compose: dict[str, Any], name: str) -> None:
    gunicorn_reads = GUNICORN_SETTINGS | set(re.findall(r'"(GUNICORN_\w+)"', GUNICORN_CONF))
    environment = service_environment(compose, name)
    unread = sorted(key for key in environment if key not in DEFAULTS and key not in gunicorn_reads)
    assert not unread, f"{name} is given settings nothing reads: {unread}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_value_given_to_the_service_is_one_env_can_set(compose: dict[str, Any], name: str) -> None:
    # A bare `KEY: value` would silently win over the same KEY in .env (env_file): each must be
    # `${KEY:-default}` (or `${KEY:?why}` when required), so .env and the shell set it.
    service = compose["services"][name]
    assert service["env_file"] == [{"path": ".env", "required": False}]
    for key, value in service_environment(compose, name).items():
        match = INTERPOLATION.fullmatch(value)
        assert match and match.group(1) == key, f"{name}: {key}: {value!r} overrides .env"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_web_and_worker_share_the_production_settings(compose: dict[str, Any], name: str) -> None:
    assert "${SECRET_KEY:?" in service_environment(compose, name)["SECRET_KEY"], "SECRET_KEY must be required, never defaulted"
    environment = {key: interpolated(value) for key, value in service_environment(compose, name).items()}
    assert environment["APP_ENV"] == "production"
    assert environment["OUTBOX_DISPATCH"] == "external"
    assert environment["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:" in environment["DATABASE_URL"]
    assert environment["RATELIMIT_STORAGE_URI"].startswith("redis://redis:")
    assert environment["MAIL_SERVER"] == "mailpit"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_the_settings_compose_passes_are_accepted_by_the_service(compose: dict[str, Any], name: str) -> None:
    environ = {key: interpolated(value) for key, value in service_environment(compose, name).items()}
    settings = load_config(environ, instance_path="/nonexistent")
    assert settings["APP_ENV"] == "production"
    assert settings["LOG_FORMAT"] == "json"
    assert settings["MAIL_PORT"] == 1025
    assert "web" in settings["TRUSTED_HOSTS"]


def test_every_setting_in_the_env_example_is_one_the_service_reads() -> None:
    named = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (PROJECT / ".env.example").read_text(), flags=re.MULTILINE)
    assert named, ".env.example names no settings"
    unread = sorted(set(named) - set(DEFAULTS))
    assert not unread, f".env.example offers settings nothing reads: {unread}"


def test_the_web_command_is_gunicorn_serving_wsgi_app(compose: dict[str, Any], tmp_path: Path) -> None:
    command = compose["services"]["web"]["command"]
    assert command[0] == "gunicorn" and "wsgi:app" in command
    # Load the app the way gunicorn does, in a process of its own (wsgi.py reads the environment).
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TEST_", "DATABASE_", "FLASK_"))}
    env.update(APP_ENV="development", SECRET_KEY="x" * 32, DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}")
    done = subprocess.run(
        [sys.executable, "-c", "from gunicorn.util import import_app; app = import_app('wsgi:app'); print(type(app).__name__, app.name)"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Flask", "service"]


def test_the_worker_command_is_a_real_cli_command(compose: dict[str, Any], tmp_path: Path) -> None:
    command = compose["services"]["worker"]["command"]
    assert command[:3] == ["flask", "--app", "wsgi"]
    app = create_app(settings_for(f"sqlite:///{tmp_path / 'c.db'}"))
    result = app.test_cli_runner().invoke(args=[*command[3:], "--help"])
    assert result.exit_code == 0, result.output
    assert command[3:5] == ["outbox", "run"]
    assert "SIGTERM" in result.output


def test_the_worker_gets_longer_to_stop_than_a_mail_may_take(compose: dict[str, Any]) -> None:
    grace = compose["services"]["worker"].get("stop_grace_period", "10s")
    grace_seconds = int(re.fullmatch(r"(\d+)s", grace).group(1))
    assert grace_seconds > DEFAULTS["MAIL_TIMEOUT"]


def test_web_gets_longer_to_stop_than_gunicorns_graceful_timeout(compose: dict[str, Any]) -> None:
    # compose sends SIGTERM, then SIGKILL after stop_grace_period (10 s unless set); gunicorn's
    # master needs its whole graceful_timeout to let workers finish, and a moment to exit.
    graceful = int(re.search(r'GUNICORN_GRACEFUL_TIMEOUT", "(\d+)"', GUNICORN_CONF).group(1))
    grace = compose["services"]["web"].get("stop_grace_period", "10s")
    grace_seconds = int(re.fullmatch(r"(\d+)s", grace).group(1))
    assert grace_seconds > graceful, f"compose kills web after {grace_seconds} s, gunicorn waits {graceful} s"


def test_the_api_and_mailpit_ports_are_published(compose: dict[str, Any]) -> None:
    assert "8000:8000" in compose["services"]["web"]["ports"]
    assert "8025:8025" in compose["services"]["mailpit"]["ports"]


def test_the_worker_and_web_wait_for_a_healthy_database(compose: dict[str, Any]) -> None:
    for name in ("web", "worker"):
        assert compose["services"][name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in compose["services"]["postgres"]


def test_the_image_copies_everything_the_service_needs_at_run_time(dockerfile: list[tuple[str, str]]) -> None:
    copied: set[str] = set()
    for instruction, arguments in dockerfile:
        if instruction == "COPY":
            sources = arguments.split()[:-1]
            copied.update(source.rstrip("/") for source in sources if not source.startswith("--"))
    missing = [path for path in RUNTIME_PATHS if path not in copied]
    assert not missing, f"the Dockerfile does not copy {missing}"
    for path in RUNTIME_PATHS:
        assert (PROJECT / path).exists(), path


def test_the_image_runs_what_compose_runs_and_exposes_8000(
    dockerfile: list[tuple[str, str]], compose: dict[str, Any]
) -> None:
    [cmd] = [arguments for instruction, arguments in dockerfile if instruction == "CMD"]
    assert yaml.safe_load(cmd) == compose["services"]["web"]["command"]
    exposed = {port for instruction, arguments in dockerfile if instruction == "EXPOSE" for port in arguments.split()}
    assert "8000" in exposed
    assert all(service.get("build") == "." for name, service in compose["services"].items() if name in ("web", "worker"))


def test_migrations_run_once_before_web_and_worker_start(compose: dict[str, Any], tmp_path: Path) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["flask", "--app", "wsgi", "db", "upgrade"]
    assert migrate["restart"] == "no", "a one-shot that restarts would migrate in a loop"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["healthcheck"] == {"disable": True}
    for name in ("web", "worker"):
        assert compose["services"][name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    app = create_app(settings_for(f"sqlite:///{tmp_path / 'c.db'}"))
    result = app.test_cli_runner().invoke(args=[*migrate["command"][3:], "--help"])
    assert result.exit_code == 0, result.output


def test_long_running_services_restart_and_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name != "migrate":
            assert service.get("restart") == "unless-stopped", name
        image = service.get("image", "")
        if "build" not in service:
            repository, _, tag = image.rpartition(":")
            assert repository and re.search(r"\d", tag) and tag != "latest", f"{name}: {image!r} is not pinned"


def test_every_service_checks_its_own_health(compose: dict[str, Any], dockerfile: list[tuple[str, str]]) -> None:
    services = compose["services"]
    assert "pg_isready" in str(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert "readyz" in services["mailpit"]["healthcheck"]["test"]
    # web keeps the image's check on its own port; the worker, which serves none, has its own.
    assert "healthcheck" not in services["web"]
    [check] = [arguments for instruction, arguments in dockerfile if instruction == "HEALTHCHECK"]
    assert ":8000/healthz" in check
    assert "8000" not in str(services["worker"]["healthcheck"]["test"])


def test_the_images_web_check_passes_against_a_production_app(dockerfile: list[tuple[str, str]], tmp_path: Path) -> None:
    [check] = [arguments for instruction, arguments in dockerfile if instruction == "HEALTHCHECK"]
    command = yaml.safe_load(check[check.index("CMD ") + 4:])
    public = "https://account.example.com"
    app = create_app(
        settings_for(
            f"sqlite:///{tmp_path / 'c.db'}", APP_ENV="production", PUBLIC_BASE_URL=public, PASSWORD_HASH_CHEAP=False,
            **PRODUCTION_SERVICES,
        )
    )
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        probe = [part.replace(":8000/", f":{server.server_port}/") for part in command]
        env = {**os.environ, "PUBLIC_BASE_URL": public}
        done = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        # The same probe without the public Host is refused by the app: the Host matters.
        env["PUBLIC_BASE_URL"] = "http://127.0.0.1"
        refused = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
        assert refused.returncode != 0 and "400" in refused.stderr
    finally:
        server.shutdown()


def test_the_worker_check_reads_the_heartbeat_the_running_worker_writes(compose: dict[str, Any], tmp_path: Path) -> None:
    worker = compose["services"]["worker"]
    assert worker["command"][-2:] == ["--heartbeat", HEARTBEAT]
    check = worker["healthcheck"]["test"]
    assert check[0] == "CMD" and HEARTBEAT in check[-1]
    heartbeat = tmp_path / "heartbeat"
    probe = [part.replace(HEARTBEAT, str(heartbeat)) for part in check[1:]]
    probe[0] = sys.executable

    def healthy() -> bool:
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0

    assert not healthy(), "no heartbeat yet must count as unhealthy"
    app = create_app(settings_for(f"sqlite:///{tmp_path / 'c.db'}"))
    with app.app_context():
        db.create_all()
    dispatcher = Dispatcher(app, poll_seconds=0.05)
    dispatcher.heartbeat = heartbeat
    thread = threading.Thread(target=dispatcher.run_forever, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not heartbeat.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert healthy()
    finally:
        dispatcher.stop()
        thread.join(10)
    stale = time.time() - 600
    os.utime(heartbeat, (stale, stale))
    assert not healthy(), "a worker whose loop stopped passing must turn unhealthy"


def test_gunicorns_control_socket_is_off() -> None:
    # The setting must be one the locked gunicorn knows, or the line would be silently ignored.
    assert "control_socket_disable" in GunicornConfig().settings
    namespace: dict[str, Any] = {"__file__": str(PROJECT / "gunicorn.conf.py")}
    saved = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    exec(compile(GUNICORN_CONF, "gunicorn.conf.py", "exec"), namespace)
    made = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if saved is None:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if made and Path(made).name.startswith("resetdesk-metrics-"):
            Path(made).rmdir()
    assert namespace["control_socket_disable"] is True


def test_the_image_is_built_in_stages_from_the_lock(dockerfile: list[tuple[str, str]]) -> None:
    froms = [arguments for instruction, arguments in dockerfile if instruction == "FROM"]
    assert len(froms) >= 2 and froms[0].endswith("AS builder"), froms
    runs = [arguments for instruction, arguments in dockerfile if instruction == "RUN"]
    assert any("pip install --require-hashes -r requirements.lock" in run for run in runs)
    assert any(run.startswith("pybabel compile") and "-d translations" in run for run in runs), "catalogs must be compiled"
    final = dockerfile[max(i for i, (instruction, _) in enumerate(dockerfile) if instruction == "FROM"):]
    assert any(instruction == "COPY" and "--from=builder" in arguments and "translations" in arguments for instruction, arguments in final)
    assert any(instruction == "COPY" and "--from=builder" in arguments and "/opt/venv" in arguments for instruction, arguments in final)
    [user] = [arguments for instruction, arguments in final if instruction == "USER"]
    assert user not in ("root", "0")
    # Dependencies before code: the lock is installed before any of the project's code is copied.
    order = [arguments for instruction, arguments in dockerfile if instruction in ("COPY", "RUN")]
    lock_install = next(i for i, a in enumerate(order) if "requirements.lock" in a and "pip install" in a)
    code_copy = next(i for i, a in enumerate(order) if a.split()[0] == "service")
    assert lock_install < code_copy


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = {line.strip() for line in (PROJECT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", "instance", ".env"} <= ignored
    assert not {"service", "templates", "static", "migrations", "translations", "requirements.lock"} & ignored
