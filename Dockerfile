# resetdesk: one image for the web process (gunicorn), the outbox workers and migrations.
# The builder installs the locked dependencies into a virtual environment and compiles the
# catalogs; the final stage takes only those and the code, and runs as a plain user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /build
# Dependencies before code: this layer is rebuilt when the lock changes, not at every edit.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
# The .mo files are built, never committed: without them French pages come out in English.
COPY translations ./translations
RUN pybabel compile --statistics -d translations

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH PYTHONPATH=/app
RUN useradd --system --uid 10001 --home-dir /app --no-create-home resetdesk
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /build/translations ./translations
# The code runs from /app (service/ finds templates/, static/, translations/ and migrations/
# beside it), so it is copied, not installed; the least often changed first.
COPY migrations ./migrations
COPY static ./static
COPY templates ./templates
COPY wsgi.py gunicorn.conf.py ./
COPY service ./service
RUN mkdir -p /app/instance && chown resetdesk /app/instance
USER resetdesk

EXPOSE 8000
# The web process's check. Flask refuses a Host it does not trust (400), so the probe names
# the public host, which is always trusted. Compose gives the worker and migrate their own.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s CMD ["python", "-c", "import os, urllib.parse, urllib.request; host = urllib.parse.urlsplit(os.environ.get('PUBLIC_BASE_URL') or 'http://localhost').netloc; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8000/healthz', headers={'Host': host}), timeout=2)"]
CMD ["gunicorn", "wsgi:app"]
