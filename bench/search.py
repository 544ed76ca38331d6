"""How fast is support search on 1,000,000 accounts on PostgreSQL?

The agent on the phone types a surname or a few digits of a phone number; the console must
answer in well under a second. This script empties the given PostgreSQL database (its public
schema), builds the schema with the service's migrations (`pg_trgm` and the trigram indexes
included), loads N accounts with COPY (indexes dropped during the load and rebuilt after, as a
bulk import would), ANALYZEs, then times the service's own search query
(`service.support.actions.search_condition`, newest page of 21 ordered by username) for:

- a surname search: a random surname of the generated population (each is shared by about
  1 in 200 accounts, so thousands of matches, of which a page is returned), accents as typed;
- a rare-surname search: a surname only a handful of accounts carry;
- a phone search: 7 consecutive digits of an existing account's number, typed with a dash.

It prints p50 and p99 per kind, and the load and index-build times.

    .venv/bin/python bench/search.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/DB \
        [--accounts 1000000] [--queries 300]

The database's contents are destroyed: never point it at data you want to keep.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, select, text

from service import create_app
from service.models import Account
from service.platform.extensions import db
from service.platform.text import digits_of, normalise_email, normalise_username, searchable
from service.support.actions import search_condition

FIRST_NAMES = [
    "José", "María", "Jean", "Chloé", "Noël", "Zoë", "Ana", "Luis", "Émile", "Hélène", "Marc", "Julie",
    "Pierre", "Sophie", "David", "Sarah", "Mohamed", "Fatima", "Wei", "Mei", "Olivier", "Amélie", "Kevin",
    "Laura", "Thomas", "Léa", "Hugo", "Inès", "Lucas", "Manon",
]
SYLLABLES = ["lo", "pez", "gar", "cí", "a", "mar", "tin", "ber", "nard", "du", "bois", "tré", "mbl", "ay",
             "roy", "gau", "thier", "pel", "le", "tier", "fon", "taine", "ché", "vali", "er", "gi", "rard"]


def surnames(count: int, rng: random.Random) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize())
    return sorted(names)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def load(url: str, accounts: int, rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    """Empty the database, migrate it, COPY the accounts in; returns common and rare surnames, and phones."""
    import flask_migrate

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    app = create_app({"APP_ENV": "testing", "SECRET_KEY": "bench", "DATABASE_URL": url, "PASSWORD_HASH_CHEAP": True})
    with app.app_context():
        flask_migrate.upgrade(directory=app.extensions["migrate"].directory)
        db.engine.dispose()
    common = surnames(200, rng)
    rare = surnames(5200, rng)[-5000:]
    sample_phones: list[str] = []
    raw = create_engine(url).raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("DROP INDEX ix_accounts_search_text_trgm")
        cursor.execute("DROP INDEX ix_accounts_phone_digits_trgm")
        started = time.perf_counter()
        columns = ("username, username_key, email, email_key, status, must_change_password, created_at, "
                   "full_name, phone, search_text, phone_digits")
        with cursor.copy(f"COPY accounts ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for number in range(accounts):
                first = rng.choice(FIRST_NAMES)
                last = rng.choice(rare) if number % 50 == 0 else rng.choice(common)
                username = f"{searchable(first)}.{searchable(last)}{number}".replace(" ", "")
                email = f"{username}@{rng.choice(['example.com', 'exemple.fr', 'mail.example.org'])}"
                phone = f"+1 ({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
                full_name = f"{first} {last}"
                if number % 997 == 0:
                    sample_phones.append(phone)
                copy.write_row((
                    username, normalise_username(username), email, normalise_email(email), "active", False,
                    "2026-01-01 00:00:00+00", full_name, phone,
                    "\n".join(searchable(part) for part in (username, email, full_name)), digits_of(phone),
                ))
        raw.commit()
        print(f"loaded {accounts:,} accounts with COPY in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        cursor.execute("CREATE INDEX ix_accounts_search_text_trgm ON accounts USING gin (search_text gin_trgm_ops)")
        cursor.execute("CREATE INDEX ix_accounts_phone_digits_trgm ON accounts USING gin (phone_digits gin_trgm_ops)")
        cursor.execute("ANALYZE accounts")
        raw.commit()
        print(f"built the trigram indexes and analyzed in {time.perf_counter() - started:.1f} s")
    finally:
        raw.close()
    return common, rare, sample_phones


def time_queries(url: str, queries: dict[str, list[str]], rounds: int, rng: random.Random) -> None:
    app = create_app({"APP_ENV": "testing", "SECRET_KEY": "bench", "DATABASE_URL": url, "PASSWORD_HASH_CHEAP": True})
    with app.app_context():
        for kind, pool in queries.items():
            samples: list[float] = []
            matched: list[int] = []
            for _ in range(rounds):
                query = rng.choice(pool)
                started = time.perf_counter()
                rows = db.session.scalars(
                    select(Account).where(search_condition(query)).order_by(Account.username_key).limit(21)
                ).all()
                samples.append((time.perf_counter() - started) * 1000)
                matched.append(len(rows))
                db.session.rollback()
            print(
                f"{kind:<22} p50 {percentile(samples, 0.50):7.1f} ms   p99 {percentile(samples, 0.99):7.1f} ms   "
                f"mean {statistics.fmean(samples):6.1f} ms   (page of up to 21; median rows {statistics.median(matched):.0f})"
            )
        db.engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL database this script may empty")
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a PostgreSQL URL")
    rng = random.Random(args.seed)
    common, rare, phones = load(args.database_url, args.accounts, rng)
    time_queries(
        args.database_url,
        {
            "surname (common)": [name.lower() for name in common],
            "surname (rare)": [name.upper() for name in rare],
            "phone (7 digits)": [digits_of(phone)[-7:-4] + "-" + digits_of(phone)[-4:] for phone in phones],
        },
        args.queries,
        rng,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
