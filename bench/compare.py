"""`make bench`: every comparison of issue 15 in one run, and one table of ratios.

    .venv/bin/python bench/compare.py [--quick] [--only request,reset,signin,delivery,timing] [--json FILE]

Runs, one after the other, on this machine:

  request   bench/request_path.py: POST /api/v1/password-resets (production middleware,
            OUTBOX_DISPATCH=external) against bench/bare_app.py (one indexed SELECT and one
            INSERT on SQLite with the same pragmas); target >= 0.6x.
  reset     bench/whole_reset.py: the whole reset (answered, issued, mail accepted by the sink)
            with inline dispatch against Django 5.2's PasswordResetView (bench/django_peer, in
            its own venv bench/.venv-django, made on first use); target >= 2x.
  signin    bench/signin.py: POST /api/v1/auth/verify with the right password against
            argon2-cffi verifying the same hash in as many processes as workers; target >= 0.9x.
  delivery  bench/delivery.py --json, if present: outbox delivery with 4 workers on PostgreSQL
            against the SMTP sink's own ceiling in the same run (target >= 0.8x, and >= 1,000
            mails/s where the sink's ceiling allows it).
  timing    the existing-versus-missing gap: bench/verify_timing.py --pairs 1000 (sign-in) and
            bench/reset_request.py's timing pairs (1000; its other parts cut short), and
            bench/code_timing.py --pairs 1000 (a wrong reset code); target: not significant
            (Wilcoxon p >= 0.05) and |median gap| < 1 ms.

Every server runs with 2 gunicorn sync workers and 8 closed-loop clients (4 for sign-in, which
is enough to keep both workers hashing), except where a script's own defaults say otherwise.
Then it prints the table (measure | resetdesk | peer | ratio | target | verdict) with the
date, the code's commit and the load average at the start and the end, ready to paste into
bench/README.md. `--quick` runs each part short (a smoke run, not figures to quote). A part that
fails prints its error and the run goes on; the exit code is 0 after a complete run whatever the
verdicts, 2 if any part failed, 130/143 when interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import BENCH, ROOT, HarnessError, install_sigterm_exit
from loadgen import LoadError, loadavg

PARTS = ("request", "reset", "signin", "delivery", "timing")
PYTHON = sys.executable


@dataclass
class Row:
    measure: str
    resetdesk: str
    peer: str
    ratio: str
    target: str
    verdict: str


@dataclass
class Run:
    rows: list[Row] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, part: str, measure: str, error: BaseException | str) -> None:
        text = str(error).strip().splitlines()
        message = text[0] if text else type(error).__name__
        self.failures.append(f"{part}: {error}")
        self.rows.append(Row(measure, "-", "-", "-", "-", f"ERROR: {message[:60]}"))


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def code_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def step(title: str) -> None:
    print(f"\n== {title} (load {loadavg()}) ==", file=sys.stderr, flush=True)


def compared(run: Run, part: str, figures: dict, measure: str, ours: float, peer: float, target: str) -> None:
    """Keep a part's figures, and its row: our rate beside the peer's, their ratio, its verdict."""
    run.figures[part] = figures
    run.rows.append(Row(measure, f"{ours:.0f}", f"{peer:.0f}", f"{figures['ratio']:.2f}x", target, verdict(figures["passed"])))


def part_request(run: Run, quick: bool) -> None:
    import request_path

    step("request path against the bare durable write")
    figures = request_path.measure(duration=4 if quick else 10, warmup=0.5 if quick else 1.0)
    service, bare = figures["service"], figures["bare"]
    compared(run, "request", figures, "request path, req/s (external dispatch; peer: bare Flask SELECT+INSERT)",
             service["rps"], bare["rps"], ">= 0.6x")
    run.notes.append(f"request path CPU/request: service {service['cpu_ms']:.2f} ms, bare {bare['cpu_ms']:.2f} ms")


def part_reset(run: Run, quick: bool) -> None:
    import whole_reset

    step("whole reset against Django 5.2's PasswordResetView")
    figures = whole_reset.measure(duration=4 if quick else 10, warmup=0.5 if quick else 1.0)
    ours, peer = figures["resetdesk"], figures["django"]
    compared(run, "reset", figures, "whole reset, resets/s incl. mail (inline; peer: Django 5.2)",
             ours["rps_whole"], peer["rps_whole"], ">= 2x")
    run.notes.append(f"whole reset CPU/request: resetdesk {ours['cpu_ms']:.2f} ms, Django {peer['cpu_ms']:.2f} ms; "
                     f"Django and gunicorn in the peer's venv: {figures['peer_versions']}")


def part_signin(run: Run, quick: bool) -> None:
    import signin

    step("sign-in against argon2-cffi")
    figures = signin.measure(duration=4 if quick else 10, warmup=0.5 if quick else 1.0)
    run.figures["signin"] = figures
    run.rows.append(Row(
        "sign-in, right password, /s (peer: argon2-cffi verify, 2 processes)",
        f"{figures['service']['rps']:.1f}", f"{figures['argon2']['rps']:.1f}", f"{figures['ratio']:.2f}x", ">= 0.9x",
        verdict(figures["passed"]),
    ))
    run.notes.append(f"sign-in: hash {figures['hash_parameters']}, service CPU/request {figures['service']['cpu_ms']:.1f} ms")


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in its output")


def part_delivery(run: Run, quick: bool) -> None:
    script = BENCH / "delivery.py"
    if not script.exists():
        print("delivery: bench/delivery.py not found", flush=True)
        run.rows.append(Row("outbox delivery, 4 workers, PostgreSQL, mails/s", "-", "-", "-", ">= 0.8x of the sink",
                            "not run: bench/delivery.py not found"))
        return
    step("outbox delivery (bench/delivery.py --json)")
    result = subprocess.run([PYTHON, str(script), "--json"], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise HarnessError(f"bench/delivery.py exited {result.returncode}: {(result.stderr or result.stdout)[-500:]}")
    figures = last_json_line(result.stdout)
    run.figures["delivery"] = figures
    ceiling = float(figures["ceiling_per_s"])
    for database in ("postgresql", "sqlite"):
        for workers, rate in sorted(figures.get(database, {}).items(), key=lambda item: int(item[0])):
            if database == "postgresql" and str(workers) == "4":
                continue
            run.notes.append(f"delivery, {database}, {workers} worker(s): {float(rate):.0f} mails/s (sink ceiling {ceiling:.0f}/s)")
    rate = float(figures["postgresql"]["4"])
    ratio = rate / ceiling if ceiling else 0.0
    run.rows.append(Row("outbox delivery, 4 workers, PostgreSQL, mails/s (peer: the sink's ceiling)",
                        f"{rate:.0f}", f"{ceiling:.0f}", f"{ratio:.2f}x", ">= 0.8x", verdict(ratio >= 0.8)))
    if ceiling >= 1000:
        row = Row("outbox delivery, 4 workers, PostgreSQL, mails/s", f"{rate:.0f}", "-", "-", ">= 1000/s", verdict(rate >= 1000))
    else:
        row = Row("outbox delivery, 4 workers, PostgreSQL, mails/s", f"{rate:.0f}", "-", "-", ">= 1000/s",
                  f"n/a: the sink's ceiling is {ceiling:.0f}/s")
    run.rows.append(row)


GAP = re.compile(r"paired median gap:\s+([+-]?\d+\.\d+) ms")
WILCOXON = re.compile(r"Wilcoxon signed-rank:\s+p = (\d+\.\d+)")


def timing_figures(output: str) -> tuple[float, float]:
    gap, wilcoxon = GAP.search(output), WILCOXON.search(output)
    if not gap or not wilcoxon:
        raise ValueError(f"no paired gap in its output: {output[-300:]}")
    return float(gap.group(1)), float(wilcoxon.group(1))


def timing_row(run: Run, measure: str, command: list[str], key: str) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise HarnessError(f"{' '.join(command[1:3])} exited {result.returncode}: {(result.stderr or result.stdout)[-500:]}")
    gap, p = timing_figures(result.stdout)
    run.figures[key] = {"gap_ms": gap, "wilcoxon_p": p}
    run.rows.append(Row(measure, f"gap {gap:+.3f} ms", "-", f"p = {p:.3f}", "p >= 0.05 and gap under 1 ms",
                        verdict(p >= 0.05 and abs(gap) < 1.0)))


def part_timing(run: Run, quick: bool) -> None:
    step("existing-versus-missing timing, sign-in")
    pairs = 300 if quick else 1000
    try:
        timing_row(run, f"timing, /auth/verify, {pairs} pairs (existing minus missing)",
                   [PYTHON, str(BENCH / "verify_timing.py"), "--pairs", str(pairs)], "timing_verify")
    except (HarnessError, ValueError, subprocess.SubprocessError) as error:
        run.fail("timing (verify)", f"timing, /auth/verify, {pairs} pairs", error)
    step("existing-versus-missing timing, reset request")
    pairs = 500 if quick else 1000
    timing_row(run, f"timing, /password-resets, {pairs} pairs (existing minus missing)",
               [PYTHON, str(BENCH / "reset_request.py"), "--duration", "2", "--rounds", "1", "--pairs", str(pairs),
                "--spill-pairs", "0", "--no-external-baseline"], "timing_reset")
    step("existing-versus-missing timing, a wrong reset code")
    timing_row(run, f"timing, /password-resets/confirm with a wrong code, {pairs} pairs (pending reset minus missing)",
               [PYTHON, str(BENCH / "code_timing.py"), "--pairs", str(pairs)], "timing_code")


def print_table(run: Run, header: list[str]) -> None:
    columns = ("measure", "resetdesk", "peer", "ratio", "target", "verdict")
    rows = [columns, *[(r.measure, r.resetdesk, r.peer, r.ratio, r.target, r.verdict) for r in run.rows]]
    print("\n".join(header))
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join(" --- " for _ in columns) + "|")
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")
    if run.notes:
        print()
        for note in run.notes:
            print(f"- {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test of the whole comparison")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts to run (default: all of {','.join(PARTS)})")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    args = parser.parse_args()
    chosen = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s): {', '.join(unknown)}; choose from {', '.join(PARTS)}")

    install_sigterm_exit()
    started = datetime.datetime.now(datetime.UTC)
    load_start = loadavg()
    run = Run()
    parts = {"request": part_request, "reset": part_reset, "signin": part_signin, "delivery": part_delivery,
             "timing": part_timing}
    clock = time.perf_counter()
    try:
        for name in chosen:
            try:
                parts[name](run, args.quick)
            except (HarnessError, LoadError, OSError, ValueError, KeyError, subprocess.SubprocessError) as error:
                print(f"{name}: error: {error}", *getattr(error, "__notes__", []), sep="\n", file=sys.stderr)
                run.fail(name, name, error)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    header = [
        f"resetdesk issue 15 comparison{' (--quick: smoke run, not figures)' if args.quick else ''}",
        f"date: {started:%Y-%m-%d %H:%M} UTC, {time.perf_counter() - clock:.0f} s; code: {code_commit()}",
        f"machine: nproc {os.cpu_count()}, {platform.machine()}, Linux {platform.release()}, Python {platform.python_version()}",
        f"load average (1, 5, 15 min): {load_start} at the start, {loadavg()} at the end",
    ]
    print()
    print_table(run, header)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "figures": run.figures,
                                               "rows": [row.__dict__ for row in run.rows]}, indent=2))
    return 2 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
