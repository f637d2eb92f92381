# Ingestion image: `docker compose --profile ingest run --rm ingest stcg ingest ...`
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stcg ./stcg
COPY stcg_model ./stcg_model
COPY ingest ./ingest
COPY queries ./queries
RUN pip install --no-cache-dir .
ENTRYPOINT []
CMD ["stcg", "--help"]
