# The bot's image: `docker build -t qwen-research-bot .`; docker-compose.yml runs it with
# PostgreSQL. The dependencies are exactly requirements.lock's, hash-checked.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    METRICS_PORT=9090

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

# The bot runs as a user of its own; data/ is where a SQLite DATABASE_URL writes by default.
RUN groupadd --system --gid 10001 bot \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/bot bot \
    && mkdir -p /app/data \
    && chown bot:bot /app/data

COPY bot ./bot
COPY handlers ./handlers
COPY storage ./storage
COPY manifest.yml ./

USER 10001:10001

# PORT: Slack's requests in HTTP mode, with /healthz, /readyz and /metrics;
# METRICS_PORT: those three in Socket Mode.
EXPOSE 3000 9090

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "bot.healthcheck"]

# SIGTERM drains running research for DRAIN_SECONDS (25 s by default): give the container
# more than that to stop (docker stop -t 30, compose's stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
