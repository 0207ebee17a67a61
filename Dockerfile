# One image for the API (`notifications server`) and the worker (`notifications worker`).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY app ./app
COPY workers ./workers
COPY db ./db
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

FROM python:3.11-slim
# The source tree lives in /app and comes first on the path, so the app finds
# db/migrations and hasura/ beside it (PROJECT_ROOT = /app).
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app PYTHONUNBUFFERED=1 PORT=3102
RUN useradd --create-home --uid 10001 notifications
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY app ./app
COPY workers ./workers
COPY db ./db
COPY hasura ./hasura
USER notifications
EXPOSE 3102
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=5 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '3102'), timeout=2)"
CMD ["notifications", "server"]
