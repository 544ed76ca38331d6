"""A bare Flask app for a baseline: `gunicorn --pythonpath bench bare_app:app`.

One JSON POST endpoint at the same path as the service's reset request. It does what a durable
reset request needs at the least, and nothing else: parse the JSON body, one indexed SELECT
(the account by its username, through the UNIQUE index) and one INSERT of the request, committed,
then answer 202 {"status": "accepted"}. The database is SQLite at BARE_DATABASE_PATH with the
service's settings (service/platform/database.py): WAL, synchronous=NORMAL, foreign keys on,
a 10 s busy timeout. Plain `sqlite3`, one connection per worker process, no ORM, no extensions,
no middleware: what Flask, gunicorn and the durable write alone cost per request. GET /healthz
answers for the harness. It lives in bench/ only; nothing is added to the service package.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from flask import Flask, request

DATABASE_PATH = os.environ.get("BARE_DATABASE_PATH", "bare.db")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, email TEXT)",
    "CREATE TABLE IF NOT EXISTS reset_requests (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES accounts(id), "
    "username TEXT NOT NULL, ip TEXT, requested_at REAL NOT NULL)",
)

app = Flask(__name__)
_local = threading.local()


def connection() -> sqlite3.Connection:
    """This process's connection (opened after gunicorn forks), set up as the service sets SQLite up."""
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DATABASE_PATH, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        for statement in SCHEMA:
            conn.execute(statement)
        _local.conn = conn
    return conn


@app.post("/api/v1/password-resets")
def accept() -> tuple[dict[str, str], int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("username"), str):
        return {"status": "invalid"}, 400
    username = body["username"][:150]
    conn = connection()
    # IMMEDIATE: take the write lock first, waiting (busy_timeout) for the other worker's commit.
    # A deferred transaction that reads first cannot upgrade once another writer committed
    # (SQLITE_BUSY_SNAPSHOT, at once, whatever the timeout).
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT id FROM accounts WHERE username = ?", (username,)).fetchone()
        conn.execute(
            "INSERT INTO reset_requests (account_id, username, ip, requested_at) VALUES (?, ?, ?, ?)",
            (row[0] if row else None, username, request.remote_addr, time.time()),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {"status": "accepted"}, 202


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
