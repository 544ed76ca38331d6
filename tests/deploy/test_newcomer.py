"""The newcomer's path: the contract is in the repository, `make run PORT=...` keeps links on it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
README = (PROJECT / "README.md").read_text()


def test_the_readme_links_only_inside_the_repository() -> None:
    links = re.findall(r"\]\(([^)]+)\)", README)
    outside = [link for link in links if link.startswith(("../", "/")) or "/shared/" in link]
    assert not outside, outside
    assert "(docs/CONTRACT.md)" in README
    assert (PROJECT / "docs" / "CONTRACT.md").read_text().strip()


def test_the_quick_start_signs_in_with_the_key_it_made() -> None:
    assert "apikeys create website --role client" in README
    assert re.search(r'curl [^\n]*/api/v1/auth/verify -H "Authorization: Bearer \$KEY"', README)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(("env", "expected"), [({}, "http://localhost:5055"), ({"PUBLIC_BASE_URL": "https://a.example"}, None)])
def test_make_run_on_another_port_keeps_mailed_links_on_it(env: dict[str, str], expected: str | None) -> None:
    if "PUBLIC_BASE_URL=" in ((PROJECT / ".env").read_text() if (PROJECT / ".env").exists() else ""):
        pytest.skip("this tree's .env sets PUBLIC_BASE_URL, which make run leaves alone")
    environ = {key: value for key, value in os.environ.items() if key != "PUBLIC_BASE_URL"} | env
    # -n prints the recipe; the shell it would run is then run with `flask` replaced by `env`,
    # which shows the environment flask would get.
    recipe = subprocess.run(["make", "-s", "-n", "-W", "migrate", "run", "PORT=5055"], cwd=PROJECT, env=environ,
                            capture_output=True, text=True, timeout=60, check=True).stdout
    script = recipe[recipe.index("if ["):].replace(".venv/bin/flask --app wsgi run", "env; : ")
    seen = subprocess.run(["sh", "-c", script], cwd=PROJECT, env=environ, capture_output=True, text=True, timeout=60).stdout
    assert "--port 5055" in recipe
    values = dict(line.split("=", 1) for line in seen.splitlines() if line.startswith("PUBLIC_BASE_URL="))
    assert values.get("PUBLIC_BASE_URL") == (expected or env["PUBLIC_BASE_URL"])


@pytest.mark.slow
def test_a_command_in_development_says_one_line_about_the_key_and_nothing_about_the_schema(tmp_path: Path) -> None:
    for part in ("wsgi.py", "service", "migrations", "templates", "static", "translations"):
        source = PROJECT / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / part)
    environ = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("APP_", "SECRET_", "DATABASE_", "MAIL_", "RATELIMIT_", "PUBLIC_"))
    }
    flask = str(Path(sys.executable).parent / "flask")
    for _ in range(2):  # the first command creates the embedded schema, the second finds it current
        done = subprocess.run([flask, "--app", "wsgi", "agents", "list"], cwd=tmp_path, env=environ,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip().splitlines() == [
            "SECRET_KEY is not set: using a random key for this run, so reset links and sessions end when the "
            "process restarts."
        ], done.stderr
