# hpsearch worker / dashboard image. On a GPU host torch comes with CUDA; see docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hpsearch ./hpsearch
COPY studies ./studies
RUN pip install --no-cache-dir ".[postgres,mysql]"
ENV HPSEARCH_ARTIFACTS=/shared/artifacts HPSEARCH_CACHE=/shared/cache
ENTRYPOINT ["hpsearch"]
