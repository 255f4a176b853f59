# One image for every service of docker-compose.yml (migrations, search jobs, Ray head and workers).
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# the CPU build of torch, pinned like pyproject.toml (a free resolver would pull a multi-GB CUDA build)
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY nas ./nas
COPY spaces ./spaces
COPY predictors ./predictors
COPY latency ./latency
COPY examples ./examples
RUN pip install '.[all]'
# benchmark tables are mounted at /data (NAS_BENCHMARK_DATA), never baked into the image
ENV NAS_BENCHMARK_DATA=/data
