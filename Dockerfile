# hpsearch worker / dashboard image, run as the unprivileged user hpsearch (uid 1000).
#
#   docker build -t hpsearch .                          # CPU torch (the default; compose's too)
#   docker build --build-arg TORCH=cu128 -t hpsearch .  # CUDA 12.8 torch, for GPU workers
#
# TORCH names the PyTorch wheel index (download.pytorch.org/whl/TORCH): cpu, cu126, cu128, ...
# Every package is pinned by docker/constraints.txt, generated from the environment the tests pass
# in (`make constraints`, tools/constraints.py); a CUDA build of torch pins its own nvidia-* libraries.
FROM python:3.11-slim

ARG TORCH=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 1000 --user-group hpsearch \
    && mkdir -p /shared/artifacts /shared/cache /shared/huggingface \
    && chown -R hpsearch:hpsearch /shared

WORKDIR /app
COPY docker/constraints.txt /tmp/constraints.txt
RUN pip install --constraint /tmp/constraints.txt \
        --index-url "https://download.pytorch.org/whl/${TORCH}" torch
COPY pyproject.toml README.md ./
COPY hpsearch ./hpsearch
RUN pip install --constraint /tmp/constraints.txt ".[postgres,mysql]" \
    && rm -rf build hpsearch.egg-info hpsearch pyproject.toml README.md \
    && chown hpsearch:hpsearch /app
COPY --chown=hpsearch:hpsearch studies ./studies

# /shared is a volume in compose and Kubernetes: the best models, the tokenized-data cache, and the
# Hugging Face cache (hub models and datasets), so that a restarted container downloads nothing again.
ENV HPSEARCH_ARTIFACTS=/shared/artifacts HPSEARCH_CACHE=/shared/cache HF_HOME=/shared/huggingface
USER hpsearch
ENTRYPOINT ["hpsearch"]
