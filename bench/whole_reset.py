"""The whole reset, resetdesk against Django 5.2's PasswordResetView (issue 15, target 1).

"Whole" means: the request answered, the reset issued, and its mail accepted by an SMTP sink.
Two servers, each under gunicorn with `--workers` sync workers on its own SQLite file (WAL,
synchronous=NORMAL, the same pragmas), each sending to its own local sink (bench/smtp_sink.py,
answers at once):

  resetdesk  the service with the production profile's middleware (bench/harness.py
             `production_settings`), OUTBOX_DISPATCH=inline (each web worker runs its
             dispatcher thread, which resolves the request, issues the reset and sends the
             mail after the answer), RESET_MAILS_PER_HOUR raised so every request for an
             account sends its mail, as Django's does; POST /api/v1/password-resets
             {"username": ...}, 202.
  django     bench/django_peer: a minimal Django 5.2 project, stock middleware, the stock
             PasswordResetView and PasswordResetForm, the SMTP email backend (the mail is sent
             on the request's path); POST /password_reset/ with the form's `email` and a CSRF
             cookie and token (the stock CSRF middleware checks them), 302.

Django runs from its own virtual environment, bench/.venv-django (made on first use:
`python -m venv` and `pip install 'django==5.2.*' gunicorn` from the package index), as a
peer, never a dependency of the service.

Both get the same accounts (`--accounts`, each with an email) and the same mix: a share
(`--existing-share`, default half) of requests name an account (by username for resetdesk, by
email for Django: what each form asks for), the rest a random missing one. Each existing name
means exactly one mail. `--concurrency` closed-loop clients (bench/loadgen.py) load each
server in `--rounds` slices, alternating; after each slice the script waits until that
server's sink holds every mail owed so far. Throughput = requests answered / (load time +
time until the last mail was accepted). The sinks must end with exactly the mails owed.

With `--profile S`, S more seconds of load on the service alone while py-spy samples its
workers, every thread (the request's and the dispatcher's), and the top of the profile is
printed.

    .venv/bin/python bench/whole_reset.py [--duration 10] [--rounds 2] [--profile 10] [--json]
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from harness import (
    BENCH,
    DEFAULT_REDIS_URL,
    HarnessError,
    SmtpSink,
    child_pids,
    comparison_options,
    production_settings,
    running_gunicorn,
    running_service,
    running_smtp_sink,
    start_comparison,
)
from loadgen import LoadResult, loadavg, run_and_print, run_load, tree_cpu_seconds
from profiling import sampling
from request_path import account_names, import_accounts

PEER_DIR = BENCH / "django_peer"
PEER_VENV = BENCH / ".venv-django"
PEER_REQUIREMENTS = ("django==5.2.*", "gunicorn>=23,<28")
DRAIN_TIMEOUT = 180.0
TARGET_RATIO = 2.0
# The same CSRF secret in the cookie and the form: what a browser that loaded the form sends.
CSRF_SECRET = "benchcsrfsecret0123456789abcdefA"  # 32 characters, Django's secret length


def peer_venv(path: Path = PEER_VENV) -> Path:
    """The Django peer's venv bin/ directory, made (and Django installed) if missing."""
    bin_dir = path / "bin"
    if not (bin_dir / "gunicorn").exists() or not (path / ".installed").exists():
        print(f"  making {path.relative_to(BENCH.parent)} (Django 5.2 and gunicorn, from the package index) ...",
              file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
        result = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *PEER_REQUIREMENTS],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise HarnessError(f"could not install the Django peer: {result.stdout}{result.stderr}")
        (path / ".installed").touch()
    return bin_dir


def peer_version(bin_dir: Path) -> str:
    result = subprocess.run([str(bin_dir / "python"), "-c", "import django, gunicorn; print(django.get_version(), gunicorn.__version__)"],
                            capture_output=True, text=True, timeout=60)
    return result.stdout.strip()


@dataclass
class PeerServer:
    base_url: str
    process: subprocess.Popen


@contextmanager
def running_peer(workers: int, sink: SmtpSink, accounts: int, bin_dir: Path) -> Iterator[PeerServer]:
    """bench/django_peer under the peer venv's gunicorn, on its own SQLite file with `accounts` users."""
    with tempfile.TemporaryDirectory(prefix="resetdesk-django-") as tmp:
        tmp_path = Path(tmp)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PEER_SECRET_KEY": secrets.token_urlsafe(40),
            "PEER_DATABASE_PATH": str(tmp_path / "peer.db"),
            "PEER_MAIL_SERVER": sink.host,
            "PEER_MAIL_PORT": str(sink.port),
            "DJANGO_SETTINGS_MODULE": "peer.settings",
        }
        setup = subprocess.run([str(bin_dir / "python"), "setup_peer.py", str(accounts)], cwd=PEER_DIR, env=env,
                               capture_output=True, text=True, timeout=300)
        if setup.returncode != 0:
            raise HarnessError(f"the Django peer's set-up failed:\n{setup.stdout}{setup.stderr}")
        # From the peer's directory, so the project's gunicorn.conf.py (the service's logger)
        # is not read; an access log like the service's, to a file.
        with running_gunicorn("peer.wsgi:application", workers, env, tmp_path / "gunicorn.log",
                              executable=bin_dir / "gunicorn", cwd=PEER_DIR,
                              extra_args=("--access-logfile", "-")) as (process, base_url):
            yield PeerServer(base_url, process)


class Mix:
    """Request bodies with a fixed share for existing accounts; counts the mail they owe."""

    def __init__(self, names: list[str], existing_share: float, render: Callable[[str, bool], bytes]) -> None:
        self.names = names
        self.existing_share = existing_share
        self.render = render
        self.owed = 0

    def __call__(self) -> bytes:
        if random.random() < self.existing_share:
            self.owed += 1
            return self.render(random.choice(self.names), True)
        return self.render("u" + secrets.token_hex(4), False)


def resetdesk_body(name: str, _existing: bool) -> bytes:
    return json.dumps({"username": name}).encode()


def django_body(name: str, _existing: bool) -> bytes:
    return f"email={quote(name + '@example.com')}&csrfmiddlewaretoken={CSRF_SECRET}".encode()


@dataclass
class Target:
    name: str
    base_url: str
    path: str
    arbiter_pid: int
    sink: SmtpSink
    mix: Mix
    expect: int
    headers: dict[str, str]
    result: LoadResult | None = None
    drain_s: float = 0.0
    cpu_s: float = 0.0

    def wait_for_mail(self) -> float:
        """Seconds until the sink holds every mail owed so far."""
        start = time.perf_counter()
        while (received := self.sink.count()) < self.mix.owed:
            if time.perf_counter() - start > DRAIN_TIMEOUT:
                raise HarnessError(f"{self.name}: only {received}/{self.mix.owed} mails after {DRAIN_TIMEOUT:.0f} s")
            time.sleep(0.01)
        if received > self.mix.owed:
            raise HarnessError(f"{self.name}: {received} mails for {self.mix.owed} requests naming an account")
        return time.perf_counter() - start

    def load(self, concurrency: int, duration: float, record: bool = True) -> None:
        before = tree_cpu_seconds(self.arbiter_pid)
        result = run_load(self.base_url, self.path, self.mix, label=self.name, headers=self.headers,
                          concurrency=concurrency, duration=duration, max_requests=10**7, expect_status=self.expect)
        drained = self.wait_for_mail()
        if not record:
            return
        self.cpu_s += tree_cpu_seconds(self.arbiter_pid) - before
        self.drain_s += drained
        self.result = result if self.result is None else self.result.merge(result)
        print(f"  {self.name:9} slice: {result.line()}; mail done {drained:.2f} s later; load {loadavg().split()[0]}",
              file=sys.stderr, flush=True)

    @property
    def rate(self) -> float:
        return self.result.count / (self.result.elapsed_s + self.drain_s)

    def figures(self) -> dict:
        return {"rps_answered": self.result.rps, "rps_whole": self.rate, "requests": self.result.count,
                "mails": self.sink.count(), "drain_s": self.drain_s, "p50_ms": self.result.p50_ms,
                "p99_ms": self.result.p99_ms, "cpu_ms": 1000 * self.cpu_s / self.result.count}


def measure(*, workers: int = 2, concurrency: int = 8, duration: float = 10.0, rounds: int = 2, warmup: float = 1.0,
            accounts: int = 100, existing_share: float = 0.5, redis_url: str = DEFAULT_REDIS_URL,
            profile_s: float = 0.0, profile_top: int = 25) -> dict:
    bin_dir = peer_venv()
    names = account_names(accounts)
    with ExitStack() as stack:
        service_sink = stack.enter_context(running_smtp_sink(0.0))
        peer_sink = stack.enter_context(running_smtp_sink(0.0))
        settings = {**production_settings(redis_url, mail=service_sink.env()), "OUTBOX_DISPATCH": "inline",
                    "RESET_MAILS_PER_HOUR": str(10**9)}
        service = stack.enter_context(running_service(workers, settings))
        import_accounts(service, names)
        peer = stack.enter_context(running_peer(workers, peer_sink, accounts, bin_dir))
        targets = [
            Target("resetdesk", service.base_url, "/api/v1/password-resets", service.process.pid, service_sink,
                   Mix(names, existing_share, resetdesk_body), 202, {}),
            Target("django", peer.base_url, "/password_reset/", peer.process.pid, peer_sink,
                   Mix(names, existing_share, django_body), 302,
                   {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={CSRF_SECRET}"}),
        ]
        for target in targets:
            target.load(concurrency, warmup, record=False)
        for number in range(rounds):
            for target in targets if number % 2 == 0 else reversed(targets):
                target.load(concurrency, duration / rounds)
        service_t, peer_t = targets
        ratio = service_t.rate / peer_t.rate
        figures = {
            "resetdesk": service_t.figures(), "django": peer_t.figures(), "ratio": ratio, "target": TARGET_RATIO,
            "passed": ratio >= TARGET_RATIO, "peer_versions": peer_version(bin_dir), "profile": "",
        }
        if profile_s:
            print(f"  profiling resetdesk for {profile_s:g} s (py-spy) ...", file=sys.stderr, flush=True)
            with sampling(child_pids(service.process.pid), profile_s) as profile:
                service_t.load(concurrency, profile_s, record=False)
            figures["profile"] = profile.table(profile_top)
        return figures


def report(figures: dict, args) -> None:
    print(f"\nwhole reset (answered, issued, mail accepted by the sink): gunicorn -w {args.workers}, "
          f"{args.concurrency} clients, {args.duration:g} s per server in {args.rounds} slices, "
          f"{100 * args.existing_share:.0f}% existing accounts (of {args.accounts}); Django, gunicorn: {figures['peer_versions']}")
    print(f"{'server':44} {'answered/s':>10} {'whole/s':>8} {'mails':>6} {'mail lag s':>10} {'p50 ms':>7} {'p99 ms':>7} {'CPU/req':>10}")
    labels = {"resetdesk": "resetdesk, inline dispatch (API)", "django": "Django 5.2 PasswordResetView (form)"}
    for key in ("resetdesk", "django"):
        row = figures[key]
        print(f"{labels[key]:44} {row['rps_answered']:10.1f} {row['rps_whole']:8.1f} {row['mails']:6d} "
              f"{row['drain_s']:10.2f} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} {row['cpu_ms']:7.2f} ms")
    verdict = "PASS" if figures["passed"] else "FAIL"
    print(f"resetdesk / Django, whole resets per second: {figures['ratio']:.2f}x (target >= {TARGET_RATIO}x): {verdict}")
    if figures["profile"]:
        print(f"\nprofile of the resetdesk workers, every thread (py-spy, {args.profile:g} s):\n{figures['profile']}")


def main() -> int:
    parser = comparison_options(__doc__.split("\n\n")[0])
    parser.add_argument("--profile", type=float, default=0.0, metavar="S", help="then profile the service for S seconds with py-spy")
    parser.add_argument("--top", type=int, default=25, help="rows of the profile tables (default 25)")
    args = parser.parse_args()
    start_comparison(args)
    return run_and_print(args, lambda: measure(workers=args.workers, concurrency=args.concurrency, duration=args.duration,
                          rounds=args.rounds, warmup=args.warmup, accounts=args.accounts,
                          existing_share=args.existing_share, redis_url=args.redis_url, profile_s=args.profile,
                          profile_top=args.top), report, errors=(HarnessError, subprocess.SubprocessError))


if __name__ == "__main__":
    sys.exit(main())
