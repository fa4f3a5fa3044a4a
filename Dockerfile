# CPU image running `lisa serve api` on port 8000 (the shipped lisa-tiny by default).
#   docker build -t lisa-seg .
#   docker run --rm -p 127.0.0.1:8000:8000 lisa-seg
#   docker run --rm -p 8000:8000 -e LISA_API_TOKEN=... lisa-seg --model /models/my-model   (with -v)
# A CUDA build of torch instead: see docs/serving.md.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/home/lisa/.cache/huggingface

# torch first, pinned, from the CPU wheel index: an unpinned torch from PyPI pulls a CUDA build
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# a real (non-editable) install: the shipped model is package data, the source tree is not needed.
# Every dependency is pinned with == in pyproject.toml, which hadolint cannot see:
# hadolint ignore=DL3013
RUN pip install ".[serve]" \
    && rm -rf /src

RUN useradd --create-home --uid 1000 lisa
USER 1000
WORKDIR /home/lisa

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# inside a container the API must listen on all interfaces to be reachable through -p
ENTRYPOINT ["lisa", "serve", "api", "--host", "0.0.0.0", "--port", "8000"]
