"""`make bench` (bench/compare.py): the delivery part reads bench/delivery.py's one JSON line, or
says the script is missing and goes on; the timing part reads the scripts' paired gap; the table
is pasteable Markdown. Nothing is measured here: the scripts it runs are stand-ins."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import compare  # noqa: E402


def stand_in(tmp_path: Path, figures: dict[str, object]) -> Path:
    """A bench directory whose delivery.py prints some noise, then one JSON line, as the real one does."""
    (tmp_path / "delivery.py").write_text(f"print('warming up')\nprint({json.dumps(json.dumps(figures))})\n")
    return tmp_path


def test_delivery_is_reported_against_the_sink_s_ceiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = {"ceiling_per_s": 2000.0, "postgresql": {"1": 400.0, "2": 800.0, "4": 1700.0}, "sqlite": {"1": 300.0}}
    monkeypatch.setattr(compare, "BENCH", stand_in(tmp_path, figures))
    run = compare.Run()
    compare.part_delivery(run, quick=True)
    against_sink, absolute = run.rows
    assert (against_sink.resetdesk, against_sink.peer, against_sink.ratio, against_sink.verdict) == ("1700", "2000", "0.85x", "PASS")
    assert (absolute.resetdesk, absolute.target, absolute.verdict) == ("1700", ">= 1000/s", "PASS")
    assert any("sqlite, 1 worker(s): 300" in note for note in run.notes)


def test_a_slow_sink_makes_the_absolute_target_not_applicable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = {"ceiling_per_s": 500.0, "postgresql": {"4": 350.0}, "sqlite": {}}
    monkeypatch.setattr(compare, "BENCH", stand_in(tmp_path, figures))
    run = compare.Run()
    compare.part_delivery(run, quick=True)
    against_sink, absolute = run.rows
    assert (against_sink.ratio, against_sink.verdict) == ("0.70x", "FAIL")
    assert absolute.verdict.startswith("n/a")


def test_a_missing_delivery_script_is_said_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(compare, "BENCH", tmp_path)
    run = compare.Run()
    compare.part_delivery(run, quick=True)
    assert "delivery: bench/delivery.py not found" in capsys.readouterr().out
    assert run.rows[0].verdict == "not run: bench/delivery.py not found"
    assert not run.failures


def test_the_timing_figures_are_read_from_either_script_s_output() -> None:
    verify_output = "paired median gap:       +0.099 ms   (existing minus missing)\nWilcoxon signed-rank:  p = 0.1389\n"
    assert compare.timing_figures(verify_output) == (0.099, 0.1389)
    reset_output = "paired median gap:       -0.028 ms   (existing minus missing; mean -0.089 ms)\nWilcoxon signed-rank:  p = 0.7540\n"
    assert compare.timing_figures(reset_output) == (-0.028, 0.754)


def test_the_table_is_markdown_with_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    run = compare.Run(rows=[compare.Row("request path", "700", "1000", "0.70x", ">= 0.6x", "PASS")])
    compare.print_table(run, ["header line"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "header line"
    assert "| measure | resetdesk | peer | ratio | target | verdict |" in lines
    assert "| request path | 700 | 1000 | 0.70x | >= 0.6x | PASS |" in lines
