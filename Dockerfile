# RPG Studio: one image for the API, the worker and the reconciler (docker-compose.yml).
# GPU workers: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN pip install --index-url ${TORCH_INDEX} "torch==2.14.1" "torchvision==0.29.1"
COPY pyproject.toml README.md ./
COPY rpg_core ./rpg_core
COPY api ./api
COPY worker ./worker
COPY frontend ./frontend
COPY studio ./studio
RUN pip install ".[service]" flower
RUN useradd --create-home rpg && mkdir -p /data/artifacts && chown -R rpg /data
USER rpg
EXPOSE 8000
CMD ["rpg", "api", "--host", "0.0.0.0", "--port", "8000"]
