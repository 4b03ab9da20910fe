# kokoma API: slim Python base, non-root user; migrates, then serves with uvicorn.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    KOKOMA_HOST=0.0.0.0 KOKOMA_PORT=8000 KOKOMA_WORKERS=2
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install . && useradd --create-home --uid 10001 kokoma && chown -R kokoma /app
USER kokoma
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz')" || exit 1
CMD ["sh", "-c", "kokoma migrate && exec kokoma serve --host \"$KOKOMA_HOST\" --port \"$KOKOMA_PORT\" --workers \"$KOKOMA_WORKERS\""]
