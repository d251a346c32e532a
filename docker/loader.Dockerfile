# Sluice loader image. Build from the repository root:
#   docker build -f docker/loader.Dockerfile -t sluice-loader:dev .
# Two stages: the build stage installs only the loader's runtime requirements
# (pyproject extras runtime-common + loader) into /install; the runtime stage copies that prefix
# and the service's own source, nothing else, and runs as a numeric non-root user.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml ./
COPY scripts/image_requirements.py ./scripts/
RUN python scripts/image_requirements.py loader > requirements.txt \
    && pip install --no-cache-dir --prefix=/install --requirement requirements.txt
COPY services/__init__.py services/py.typed ./app/services/
COPY services/common ./app/services/common
COPY services/loader ./app/services/loader
# Byte-compile at build time: the root filesystem is read-only at run time.
RUN python -m compileall -q /install /src/app

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sluice-loader" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    HOME=/tmp
COPY --from=build /install /usr/local
WORKDIR /app
COPY --from=build /src/app /app
USER 10001:10001
EXPOSE 50053 9103
ENTRYPOINT ["python", "-m", "services.loader"]
