"""Make the peer's database: migrate, then `count` users acct00000... with an email each.

    PEER_DATABASE_PATH=... PEER_SECRET_KEY=... python setup_peer.py COUNT   (with the peer's venv)

Every user gets the same usable password hash, made once: hashing a password per user
(PBKDF2, a million rounds in Django 5.2) would take minutes and the reset never checks it.
"""

import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peer.settings")
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.core.management import call_command  # noqa: E402

count = int(sys.argv[1])
call_command("migrate", verbosity=0)
password_hash = make_password("correct horse battery staple")
User = get_user_model()
User.objects.bulk_create(
    [User(username=f"acct{n:05d}", email=f"acct{n:05d}@example.com", password=password_hash) for n in range(count)]
)
print(f"peer ready: {User.objects.count()} users, Django {django.get_version()}")
