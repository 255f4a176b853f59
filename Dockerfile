# One image for every service of docker-compose.yml (migrations, the API, runners, Ray head and workers).
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# the CPU build of the torch release constraints.txt pins (a free resolver would pull a multi-GB CUDA build)
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md constraints.txt ./
COPY nas ./nas
COPY spaces ./spaces
COPY predictors ./predictors
COPY latency ./latency
COPY api ./api
COPY examples ./examples
RUN pip install -c constraints.txt '.[all]'
# benchmark tables are mounted at /data (NAS_BENCHMARK_DATA), never baked into the image;
# trained parents live in the shared cache volume (NAS_CACHE_DIR)
ENV NAS_BENCHMARK_DATA=/data NAS_CACHE_DIR=/cache
EXPOSE 8000
