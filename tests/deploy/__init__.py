"""Tests of what operators run: gunicorn, its settings, the image and compose files."""
