FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# Dependencies from the lock, pinned and hash-checked: the runtime and the `flower` extra (for
# `postback flower`: docker compose --profile flower). Then the project itself, without them.
COPY requirements/image.txt ./requirements/
RUN pip install --require-hashes -r requirements/image.txt
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY models ./models
COPY mappings ./mappings
COPY crm_postback ./crm_postback
RUN pip install ".[flower]" --no-deps --no-build-isolation && useradd --create-home --uid 10001 postback && mkdir /data && chown postback /data
USER postback
# web (postback serve), worker metrics (METRICS_PORT), flower
EXPOSE 8000 9808 5555
CMD ["postback", "--help"]
