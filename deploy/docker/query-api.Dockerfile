# Build from the repository root: docker build -f deploy/docker/query-api.Dockerfile -t query-api .
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir 'uv>=0.5'
WORKDIR /src
COPY pyproject.toml ./
COPY libs/otcommon libs/otcommon
COPY devstack/pyproject.toml devstack/pyproject.toml
COPY devstack/src devstack/src
COPY services services
# uv.lock is generated from the pins in pyproject.toml; only the service and what it declares are installed.
RUN uv lock && uv sync --locked --no-dev --no-editable --package query-api

FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /src/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 OT_LOG_FORMAT=json
USER 10001
EXPOSE 8084
ENTRYPOINT ["python", "-m", "query_api"]
CMD ["serve"]
