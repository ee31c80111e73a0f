"""Settings for the studio, read from environment variables.

Every variable has a default that lets `make run` work on a bare machine: SQLite
in `var/`, the django-q2 ORM broker, uploaded files in `var/media`. A variable
that is set but cannot be understood stops start-up with a message naming it.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR") or BASE_DIR / "var")


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name, "")
    return value if value.strip() else default


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}")
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name, "")
    if not value.strip():
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def _secret_key() -> str:
    """Use SECRET_KEY, or a random key kept in var/ so sessions survive restarts."""
    key = os.environ.get("SECRET_KEY", "").strip()
    if key:
        if len(key) < 32:
            raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters long")
        return key

    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def _database() -> dict:
    url = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
    try:
        config = dj_database_url.parse(url, conn_max_age=60)
    except Exception as exc:
        raise ImproperlyConfigured(f"DATABASE_URL cannot be understood: {exc}")

    if config["ENGINE"] == "django.db.backends.sqlite3":
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # The web server and the training worker write at the same time: WAL lets
        # readers go on during a write, and IMMEDIATE transactions queue writers
        # instead of failing them with "database is locked".
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    elif config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_URL must point at SQLite or PostgreSQL")
    return config


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_htmx",
    "django_q",
    "projects",
    "labeling",
    "training",
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
    "django_htmx.middleware.HtmxMiddleware",
    "projects.middleware.FirstRunMiddleware",
]

ROOT_URLCONF = "exeml_site.urls"
WSGI_APPLICATION = "exeml_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_VALIDATORS = "django.contrib.auth.password_validation"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"{_VALIDATORS}.{name}"}
    for name in [
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    ]
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "projects:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Images are private to their owner, so they are served by views that check
# access, never from a public MEDIA_URL.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# Upload limits. An image file over IMAGE_MAX_BYTES, or an image whose header
# declares more than IMAGE_MAX_PIXELS, is refused before it is decoded.
IMAGE_MAX_BYTES = env_int("IMAGE_MAX_BYTES", 30 * 1024 * 1024, minimum=1)
IMAGE_MAX_PIXELS = env_int("IMAGE_MAX_PIXELS", 50_000_000, minimum=1)
ZIP_MAX_BYTES = env_int("ZIP_MAX_BYTES", 2 * 1024**3, minimum=1)
ZIP_MAX_FILES = env_int("ZIP_MAX_FILES", 50_000, minimum=1)
UPLOAD_MAX_FILES = env_int("UPLOAD_MAX_FILES", 1000, minimum=1)
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
THUMBNAIL_SIZE = 256

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ExeML Studio API",
    "DESCRIPTION": "Projects, images, labels, dataset versions, training, prediction.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "ENUM_NAME_OVERRIDES": {
        "TrainingStatusEnum": "training.models.TrainingRun.Status",
        "ServiceStatusEnum": "training.models.Service.Status",
        "PreferenceEnum": "training.models.TrainingRun.Preference",
    },
}

# Training can be allowed up to 6000 minutes. The worker must never kill a run
# before its own time limit stops it, and must never hand it to a second worker
# while it is still going: `retry` is above `timeout`, and one attempt only.
TRAINING_MAX_MINUTES = 6000
_TASK_TIMEOUT = (TRAINING_MAX_MINUTES + 30) * 60
Q_CLUSTER = {
    "name": "exeml",
    "orm": "default",
    "workers": env_int("WORKER_PROCESSES", 1, minimum=1),
    "timeout": _TASK_TIMEOUT,
    "retry": _TASK_TIMEOUT + 600,
    "max_attempts": 1,
    "ack_failures": True,
    "recycle": 50,
    "save_limit": 500,
    "catch_up": False,
    "sync": env_bool("Q_SYNC", False),
    "label": "Background tasks",
}
TRAINING_THREADS = env_int("TRAINING_THREADS", 0)
# torch threads per prediction in the web process (0: every core).
PREDICTION_THREADS = env_int("PREDICTION_THREADS", 1)
# A running training run writes a heartbeat; one silent for longer than this is
# taken as dead (its worker was killed) and marked failed.
TRAINING_HEARTBEAT_TIMEOUT = env_int("TRAINING_HEARTBEAT_TIMEOUT", 60, minimum=5)

SHARED_DIR = Path(env_str("EXEML_SHARED_DIR", str(BASE_DIR.parent / "shared")))

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
        f"not {os.environ['LOG_LEVEL']!r}"
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
