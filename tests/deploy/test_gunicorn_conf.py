"""gunicorn.conf.py: workers per core, timeouts, a JSON access log with the request id, and a
worker_exit hook that lets the inline mail dispatcher finish the message in flight."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import shutil
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from service import create_app
from service.platform.extensions import db
from tests.conftest import test_settings as settings_for

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
GUNICORN_VARIABLES = ("WEB_CONCURRENCY", "GUNICORN_BIND", "GUNICORN_TIMEOUT", "GUNICORN_GRACEFUL_TIMEOUT")


@pytest.fixture
def load_conf(monkeypatch: pytest.MonkeyPatch):
    """Import gunicorn.conf.py afresh under a given environment, as gunicorn does at start.

    The file sets PROMETHEUS_MULTIPROC_DIR in os.environ; monkeypatch restores it afterwards,
    so no other test's app finds itself in multiprocess mode.
    """
    made_dirs: list[str] = []

    def load(**env: str) -> ModuleType:
        for name in (*GUNICORN_VARIABLES, "PROMETHEUS_MULTIPROC_DIR"):
            monkeypatch.setenv(name, "placeholder")  # recorded, so undone after the test
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        spec = importlib.util.spec_from_file_location(f"gunicorn_conf_{len(made_dirs)}", CONF)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        made_dirs.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        return module

    yield load
    for directory in made_dirs:
        if Path(directory).name.startswith("resetdesk-metrics-"):  # made by the file, not given
            shutil.rmtree(directory, ignore_errors=True)


class StubDispatcher:
    def __init__(self) -> None:
        self.stop_calls: list[dict[str, Any]] = []

    def stop(self, wait_seconds: float = 0.0) -> None:
        self.stop_calls.append({"wait_seconds": wait_seconds})


def test_the_defaults_are_a_sync_worker_per_core_plus_one_and_30_second_timeouts(load_conf: Any) -> None:
    conf = load_conf()
    assert conf.workers == multiprocessing.cpu_count() + 1
    assert conf.worker_class == "sync"
    assert conf.bind == "0.0.0.0:8000"
    assert conf.timeout == 30
    assert conf.graceful_timeout == 30
    assert conf.max_requests > 0 and conf.max_requests_jitter > 0


def test_the_environment_overrides_workers_bind_and_timeouts(load_conf: Any) -> None:
    conf = load_conf(
        WEB_CONCURRENCY="3", GUNICORN_BIND="127.0.0.1:9000", GUNICORN_TIMEOUT="45", GUNICORN_GRACEFUL_TIMEOUT="20"
    )
    assert (conf.workers, conf.bind, conf.timeout, conf.graceful_timeout) == (3, "127.0.0.1:9000", 45, 20)


def test_the_access_log_goes_to_standard_output_through_the_redacting_logger(load_conf: Any) -> None:
    conf = load_conf()
    assert conf.accesslog == "-" and conf.errorlog == "-"
    assert conf.logger_class == "service.platform.accesslog.JsonAccessLogger"
    assert not hasattr(conf, "access_log_format")  # %(r)s would log the whole request line


def test_the_metrics_directory_is_made_for_the_workers_unless_one_is_given(load_conf: Any, tmp_path: Path) -> None:
    load_conf()
    made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert made.is_dir()
    load_conf(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)


def test_worker_exit_stops_the_dispatcher_and_waits_up_to_the_graceful_timeout(load_conf: Any) -> None:
    conf = load_conf(GUNICORN_GRACEFUL_TIMEOUT="12")
    dispatcher = StubDispatcher()
    worker = SimpleNamespace(pid=4242, wsgi=SimpleNamespace(extensions={"resetdesk.dispatcher": dispatcher}))

    conf.worker_exit(server=None, worker=worker)

    assert dispatcher.stop_calls == [{"wait_seconds": 12}]


@pytest.mark.parametrize(
    "worker",
    [SimpleNamespace(pid=1), SimpleNamespace(pid=1, wsgi=None), SimpleNamespace(pid=1, wsgi=SimpleNamespace(extensions={}))],
    ids=["not-loaded", "no-app", "no-dispatcher"],
)
def test_worker_exit_does_nothing_for_a_worker_without_a_dispatcher(load_conf: Any, worker: Any) -> None:
    load_conf().worker_exit(server=None, worker=worker)


def test_worker_exit_lets_a_real_inline_dispatcher_thread_finish(load_conf: Any, tmp_path: Path) -> None:
    app = create_app(settings_for(f"sqlite:///{tmp_path / 'w.db'}", OUTBOX_DISPATCH="inline"))
    dispatcher = app.extensions["resetdesk.dispatcher"]
    dispatcher.poll_seconds = 60  # idle: only stop() can end its wait
    try:
        with app.app_context():
            db.create_all()
        dispatcher.ensure_thread()
        thread = dispatcher._thread
        assert thread is not None and thread.is_alive()

        load_conf(GUNICORN_GRACEFUL_TIMEOUT="5").worker_exit(server=None, worker=SimpleNamespace(pid=1, wsgi=app))

        assert dispatcher.stopping.is_set()
        assert not thread.is_alive(), "worker_exit returned before the dispatcher thread ended"
    finally:
        dispatcher.stop(wait_seconds=5)
        with app.app_context():
            db.engine.dispose()
