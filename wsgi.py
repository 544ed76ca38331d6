"""WSGI entry: `gunicorn wsgi:app`, and `flask --app wsgi ...` for commands."""

from service import create_app

app = create_app()
