"""Settings for HoffDesk Images.

Everything an operator may change is a ``HOFFDESK_`` environment variable (plus
``DATABASE_URL``), read through the helpers in ``env.py`` so a bad value names its variable.
The defaults run a single machine with SQLite and local folders under ``./data``.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

from generation.cloud_prices import cloud_price_table
from generation.profiles import all_profiles, comfyui_checkpoint_table
from hoffdesk_images.env import (
    envbool,
    envfloat,
    envint,
    envlist,
    envpath,
    envsecret,
    envstr,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DATA_DIR = envpath("HOFFDESK_DATA_DIR", BASE_DIR / "data")
# Made here whatever the key source: SQLite cannot create its file in a missing folder.
try:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
except OSError as exc:
    raise ImproperlyConfigured(f"HOFFDESK_DATA_DIR: cannot create {str(DATA_DIR)!r}: {exc}") from None
DEBUG = envbool("HOFFDESK_DEBUG", False)
ALLOWED_HOSTS = envlist("HOFFDESK_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = envlist("HOFFDESK_CSRF_TRUSTED_ORIGINS", [])
# Where ``make run`` (hoffdesk_images/run.py) serves; read here only to refuse debug off loopback.
HOFFDESK_ADDRESS = envstr("HOFFDESK_ADDRESS", "127.0.0.1:8000")


def is_loopback(host: str) -> bool:
    """True for localhost (and names under .localhost, RFC 6761), ::1 and 127.0.0.0/8."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_host(address: str) -> str:
    """The host part of a runserver address: ``port``, ``host:port``, ``[ipv6]:port``."""
    match = re.fullmatch(r"(?:(?P<host>\[[^\]]*\]|[^:\[\]]*):)?(?P<port>\d+)", address.strip())
    if match is None:
        return address.strip()  # not an address runserver takes: judged as a whole
    host = match.group("host")
    # runserver serves 127.0.0.1 for a bare port, and all addresses for "0".
    return "127.0.0.1" if host is None else host


if DEBUG:
    _exposed = [host for host in ALLOWED_HOSTS if not is_loopback(host)]
    if not is_loopback(address_host(HOFFDESK_ADDRESS)):
        _exposed.append(f"{HOFFDESK_ADDRESS} (HOFFDESK_ADDRESS)")
    if _exposed:
        raise ImproperlyConfigured(
            f"HOFFDESK_DEBUG=true is refused on a non-loopback address: {', '.join(_exposed)}. Debug pages "
            "show settings and tracebacks to anyone who can reach them. Use debug on 127.0.0.1 or localhost "
            "only (HOFFDESK_ALLOWED_HOSTS and HOFFDESK_ADDRESS), or set HOFFDESK_DEBUG=false."
        )

# --- HTTPS behind a reverse proxy (HOFFDESK_HTTPS) and headers sent always --------------------

# True when a reverse proxy terminates TLS in front of the app and sets X-Forwarded-Proto and
# X-Forwarded-For: secure cookies, HSTS, redirect to https. /healthz stays reachable over plain
# HTTP for monitoring.
HOFFDESK_HTTPS = envbool("HOFFDESK_HTTPS", False)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Error reports also hide DATABASE_URL and the Authorization header (hoffdesk_images/debug.py).
DEFAULT_EXCEPTION_REPORTER_FILTER = "hoffdesk_images.debug.HoffdeskReporterFilter"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if HOFFDESK_HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    # Only behind a proxy that sets (or strips) this header on every request.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = envint("HOFFDESK_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # The preload directive only consents to inclusion in browsers' HSTS preload list; nothing
    # happens until the (registrable) domain is submitted to hstspreload.org. Set false to
    # withhold consent; ``check --deploy`` then warns (security.W021).
    SECURE_HSTS_PRELOAD = envbool("HOFFDESK_HSTS_PRELOAD", True)


def _secret_key(wait_s: float = 2.0) -> str:
    """From HOFFDESK_SECRET_KEY(_FILE); else one made on first start and kept in the data folder.

    Processes starting together on a fresh data folder (web and worker) must end with one key:
    the file is created exclusively, so one process writes its key and the others read it back,
    waiting up to ``wait_s`` for the winner to write it. A file that stays empty is reported.
    """
    import os
    import time

    configured = envsecret("HOFFDESK_SECRET_KEY")
    if configured:
        return configured
    key_file = DATA_DIR / "secret_key"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            existing: str | None = key_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            existing = None
        except OSError as exc:
            raise ImproperlyConfigured(f"Cannot read the secret key file {str(key_file)!r}: {exc}") from None
        if existing:
            return existing
        if existing is None:
            key = secrets.token_urlsafe(50)
            try:
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process starting now won: read its key back
            except OSError as exc:
                raise ImproperlyConfigured(f"Cannot create the secret key file {str(key_file)!r}: {exc}") from None
            else:
                try:
                    data = key.encode("utf-8")
                    if os.write(fd, data) != len(data):
                        raise OSError(f"short write to {key_file}")
                    os.fsync(fd)
                except BaseException:
                    # Leave no empty or partial file behind for the next start to trip over.
                    os.close(fd)
                    key_file.unlink(missing_ok=True)
                    raise
                os.close(fd)
                return key
        if time.monotonic() >= deadline:
            raise ImproperlyConfigured(
                f"The secret key file {str(key_file)!r} is empty (still after {wait_s:g} s): a start that "
                "created it died before writing a key. Delete it so that the next start makes a new key, "
                "or set HOFFDESK_SECRET_KEY."
            )
        time.sleep(0.05)


SECRET_KEY = _secret_key()

INSTALLED_APPS = [
    # First: its runserver (reused request threads, hoffdesk_images/management/commands/runserver.py)
    # wraps WhiteNoise's, which wraps Django's.
    "hoffdesk_images",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_q",
    "axes",
    "template_partials",
    "generation",
    "gallery",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise, async-capable: under ASGI a sync-only middleware would put every request,
    # the image APIs' waits included, on a thread (hoffdesk_images/middleware.py).
    "hoffdesk_images.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into its 429 response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hoffdesk_images.urls"
WSGI_APPLICATION = "hoffdesk_images.wsgi.application"
# Production: uvicorn hoffdesk_images.asgi:application (docs/deploy.md).
ASGI_APPLICATION = "hoffdesk_images.asgi.application"

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
                "generation.context_processors.engine_notice",
                "gallery.context_processors.access",
            ],
        },
    },
]


SQLITE_OPTIONS = {
    # WAL lets the worker write while the web reads; IMMEDIATE transactions plus a busy timeout
    # turn "database is locked" into a short wait (docs/design.md: 754 errors in 800 -> 0).
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
# Connections are kept for a minute, not opened per query batch: django-q2's pusher polls the
# queue 20 times a second and closed its connection after each poll, so every poll connected
# and ran the PRAGMAs again (2.8 ms of CPU a poll, 5% of a core taken from the GPU worker's
# torch threads all through a run; 0.6 ms with the connection kept, bench/engine_overhead.py).
SQLITE_CONN_MAX_AGE = 60


def _database() -> dict[str, object]:
    url = envstr("DATABASE_URL", "")
    if url:
        import dj_database_url

        try:
            config: dict[str, object] = dict(dj_database_url.parse(url, conn_max_age=60))
        except ValueError as exc:
            raise ImproperlyConfigured(f"DATABASE_URL is not a database URL we understand: {exc}") from None
        if config["ENGINE"] == "django.db.backends.sqlite3":
            config["OPTIONS"] = dict(SQLITE_OPTIONS)
            config["CONN_MAX_AGE"] = SQLITE_CONN_MAX_AGE
        return config
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "hoffdesk.sqlite3",
        "OPTIONS": dict(SQLITE_OPTIONS),
        "CONN_MAX_AGE": SQLITE_CONN_MAX_AGE,
        "TEST": {"NAME": DATA_DIR / "test-hoffdesk.sqlite3"},
    }


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "gallery:article_list"
LOGOUT_REDIRECT_URL = "login"

# --- login throttling (django-axes, attempts kept in the database) ---------------------------

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# A username is locked only together with the address its failures came from (a stranger's
# guesses never lock the owner out elsewhere), and an address alone at a higher limit, for any
# usernames. axes has one limit; hoffdesk_images/login_throttle.py gives the address its own.
AXES_FAILURE_LIMIT = envint("HOFFDESK_LOGIN_FAILURE_LIMIT", 5, minimum=1)
HOFFDESK_LOGIN_ADDRESS_FAILURE_LIMIT = envint("HOFFDESK_LOGIN_ADDRESS_FAILURE_LIMIT", 20, minimum=1)
if HOFFDESK_LOGIN_ADDRESS_FAILURE_LIMIT < AXES_FAILURE_LIMIT:
    raise ImproperlyConfigured(
        f"HOFFDESK_LOGIN_ADDRESS_FAILURE_LIMIT ({HOFFDESK_LOGIN_ADDRESS_FAILURE_LIMIT}) must be at least "
        f"HOFFDESK_LOGIN_FAILURE_LIMIT ({AXES_FAILURE_LIMIT}): an address covers every username tried from it."
    )
HOFFDESK_LOGIN_COOLOFF_MINUTES = envint("HOFFDESK_LOGIN_COOLOFF_MINUTES", 15, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=HOFFDESK_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_HANDLER = "hoffdesk_images.login_throttle.PairAndAddressHandler"
AXES_RESET_ON_SUCCESS = True
AXES_COOLOFF_MESSAGE = (
    "Too many failed login attempts for this account or from this address: logging in is blocked "
    f"for {HOFFDESK_LOGIN_COOLOFF_MINUTES} minutes. Please try again later."
)
if HOFFDESK_HTTPS:
    # Behind the one reverse proxy HOFFDESK_HTTPS assumes, REMOTE_ADDR is the proxy's: the client
    # is the right-most X-Forwarded-For entry, the one the proxy appended (entries to its left
    # come from the client and can be forged). django-ipware's proxy count would expect the
    # proxy's own address in the header too, so it stays unset.
    AXES_IPWARE_PROXY_ORDER = "right-most"
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("HOFFDESK_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "media/"

CANDIDATES_DIR = DATA_DIR / "candidates"
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    },
    # Candidates are private working files, served only through a logged-in view.
    # Their names are fixed per run and index, so a retried run overwrites its own files.
    "candidates": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": CANDIDATES_DIR, "base_url": None, "allow_overwrite": True},
    },
    # Published renditions: public, immutable, keyed by content hash (gallery/publishing.py).
    "publish": {},  # filled in below: a local folder by default, R2 when configured
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}
WHITENOISE_USE_FINDERS = True

# --- publishing (Cloudflare R2 through django-storages, or a local folder) -------------------

# Objects are keyed by content hash, so a year and "immutable" is right for a URL that never
# changes; but a CDN edge keeps serving a deleted object until its copy expires. Shorten this for
# a faster takedown, or set the Cloudflare purge below.
HOFFDESK_PUBLISH_CACHE_SECONDS = envint("HOFFDESK_PUBLISH_CACHE_SECONDS", 31536000, minimum=0)
PUBLISH_CACHE_CONTROL = f"public, max-age={HOFFDESK_PUBLISH_CACHE_SECONDS}, immutable"
R2_VARIABLES = (
    "HOFFDESK_R2_ENDPOINT_URL",
    "HOFFDESK_R2_BUCKET",
    "HOFFDESK_R2_ACCESS_KEY_ID",
    "HOFFDESK_R2_SECRET_ACCESS_KEY",
    "HOFFDESK_R2_PUBLIC_BASE_URL",
)
CANDIDATES_S3_VARIABLES = (
    "HOFFDESK_CANDIDATES_ENDPOINT_URL",
    "HOFFDESK_CANDIDATES_BUCKET",
    "HOFFDESK_CANDIDATES_ACCESS_KEY_ID",
    "HOFFDESK_CANDIDATES_SECRET_ACCESS_KEY",
)


def _all_or_none(names: tuple[str, ...]) -> dict[str, str] | None:
    """The variables' values when all are set, None when none is; a partial set is an error."""
    values = {name: (envsecret(name) if "SECRET" in name else envstr(name, "")) or "" for name in names}
    missing = [name for name, value in values.items() if not value]
    if len(missing) == len(names):
        return None
    if missing:
        raise ImproperlyConfigured(
            f"{', '.join(missing)} must be set too: {', '.join(names)} go together (set all or none)."
        )
    return values


def s3_storage_options(
    *, endpoint_url: str, bucket: str, access_key: str, secret_key: str, public_base_url: str | None
) -> dict[str, object]:
    """django-storages' S3 backend configured the way Cloudflare R2 needs it (docs/design.md): region
    ``auto``, SigV4 only, checksums only when an operation requires them (R2 rejects boto3's
    default CRC32 trailers and aws-chunked uploads), no ACLs, and, for public files, unsigned
    URLs on the CDN domain."""
    from botocore.config import Config

    options: dict[str, object] = {
        "bucket_name": bucket,
        "endpoint_url": endpoint_url,
        "access_key": access_key,
        "secret_key": secret_key,
        "region_name": "auto",
        "signature_version": "s3v4",
        "default_acl": None,
        "file_overwrite": True,
        "client_config": Config(
            signature_version="s3v4",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    }
    if public_base_url is not None:
        parsed = urlparse(public_base_url)
        options.update(
            querystring_auth=False,
            custom_domain=(parsed.netloc + parsed.path).rstrip("/"),
            url_protocol=f"{parsed.scheme or 'https'}:",
            object_parameters={"CacheControl": PUBLISH_CACHE_CONTROL},
        )
    return options


def s3_storage(variables: dict[str, str], prefix: str, *, public_base_url: str | None) -> dict[str, object]:
    """The ``STORAGES`` entry for a bucket named by the ``<prefix>ENDPOINT_URL``, ``<prefix>BUCKET``,
    ``<prefix>ACCESS_KEY_ID`` and ``<prefix>SECRET_ACCESS_KEY`` variables (``HOFFDESK_R2_`` or
    ``HOFFDESK_CANDIDATES_``), configured by ``s3_storage_options``."""
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": s3_storage_options(
            endpoint_url=variables[f"{prefix}ENDPOINT_URL"],
            bucket=variables[f"{prefix}BUCKET"],
            access_key=variables[f"{prefix}ACCESS_KEY_ID"],
            secret_key=variables[f"{prefix}SECRET_ACCESS_KEY"],
            public_base_url=public_base_url,
        ),
    }


PUBLISH_DIR = envpath("HOFFDESK_PUBLISH_DIR", DATA_DIR / "publish")
_r2 = _all_or_none(R2_VARIABLES)
if _r2 is not None:
    PUBLISH_BASE_URL = _r2["HOFFDESK_R2_PUBLIC_BASE_URL"].rstrip("/") + "/"
    STORAGES["publish"] = s3_storage(_r2, "HOFFDESK_R2_", public_base_url=PUBLISH_BASE_URL)
else:
    # Offline default: a folder under the data folder, served at /published/ by the dashboard.
    PUBLISH_BASE_URL = envstr("HOFFDESK_PUBLISH_BASE_URL", "/published/").rstrip("/") + "/"
    STORAGES["publish"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": PUBLISH_DIR, "base_url": PUBLISH_BASE_URL, "allow_overwrite": True},
    }
PUBLISH_IS_LOCAL = _r2 is None
# Optional: purge deleted files from Cloudflare's cache by URL (POST zones/<id>/purge_cache), so
# "also delete its files" is a takedown on the CDN too. Both or neither; the token (or
# HOFFDESK_CLOUDFLARE_API_TOKEN_FILE) needs the zone's "Cache Purge" permission.
HOFFDESK_CLOUDFLARE_ZONE_ID = envstr("HOFFDESK_CLOUDFLARE_ZONE_ID", "")
HOFFDESK_CLOUDFLARE_API_TOKEN = envsecret("HOFFDESK_CLOUDFLARE_API_TOKEN") or ""
if bool(HOFFDESK_CLOUDFLARE_ZONE_ID) != bool(HOFFDESK_CLOUDFLARE_API_TOKEN):
    raise ImproperlyConfigured(
        "HOFFDESK_CLOUDFLARE_ZONE_ID and HOFFDESK_CLOUDFLARE_API_TOKEN go together (set both or neither)."
    )
HOFFDESK_CLOUDFLARE_API_URL = envstr("HOFFDESK_CLOUDFLARE_API_URL", "https://api.cloudflare.com/client/v4")

_candidates_s3 = _all_or_none(CANDIDATES_S3_VARIABLES)
if _candidates_s3 is not None:
    # Several GPU machines share candidates through a private bucket; the web streams them.
    STORAGES["candidates"] = s3_storage(_candidates_s3, "HOFFDESK_CANDIDATES_", public_base_url=None)

# Renditions made when publishing: the Open Graph hero, a thumbnail, and srcset widths of the hero.
HOFFDESK_HERO_SIZE = (envint("HOFFDESK_HERO_WIDTH", 1200, minimum=16), envint("HOFFDESK_HERO_HEIGHT", 630, minimum=16))
HOFFDESK_THUMBNAIL_SIZE = (
    envint("HOFFDESK_PUBLISH_THUMB_WIDTH", 400, minimum=16),
    envint("HOFFDESK_PUBLISH_THUMB_HEIGHT", 210, minimum=16),
)
HOFFDESK_SRCSET_WIDTHS = [int(w) for w in envlist("HOFFDESK_SRCSET_WIDTHS", ["480", "800"])]
HOFFDESK_PUBLISH_FORMATS = envlist("HOFFDESK_PUBLISH_FORMATS", ["webp", "jpeg", "avif"])
HOFFDESK_PUBLISH_QUALITY = envint("HOFFDESK_PUBLISH_QUALITY", 82, minimum=1)
HOFFDESK_PUBLISH_MAX_ATTEMPTS = envint("HOFFDESK_PUBLISH_MAX_ATTEMPTS", 4, minimum=1)
HOFFDESK_PUBLISH_RETRY_SECONDS = envfloat("HOFFDESK_PUBLISH_RETRY_SECONDS", 2.0)
# The social card's title font (gallery/social_card.py): a .ttf/.otf path; empty: the vendored
# DejaVu Sans Bold in static/fonts/.
HOFFDESK_CARD_FONT = envstr("HOFFDESK_CARD_FONT", "").strip()

# --- generation -----------------------------------------------------------------------------

HOFFDESK_MODELS_DIR = envpath("HOFFDESK_MODELS_DIR", DATA_DIR / "models")
HOFFDESK_DEFAULT_MODEL = envstr("HOFFDESK_DEFAULT_MODEL", "tiny-sd")
if HOFFDESK_DEFAULT_MODEL not in all_profiles():
    raise ImproperlyConfigured(
        f"HOFFDESK_DEFAULT_MODEL must be one of {', '.join(all_profiles())}, not {HOFFDESK_DEFAULT_MODEL!r}"
    )
# Demo mode runs every real profile on the tiny random-weight model of its family (a "stand-in",
# said so on the run and in the PNG). auto: demo while no real profile's weights are installed
# in HOFFDESK_MODELS_DIR; false: a profile without weights is refused before queueing.
HOFFDESK_DEMO = envstr("HOFFDESK_DEMO", "auto").strip().lower()
if HOFFDESK_DEMO not in ("auto", "true", "false"):
    raise ImproperlyConfigured(f"HOFFDESK_DEMO must be auto, true or false, not {HOFFDESK_DEMO!r}")
# Optional local LLM prompt writer for the Magic Wand (an Ollama-style server: POST /api/generate).
HOFFDESK_OLLAMA_URL = envstr("HOFFDESK_OLLAMA_URL", "").rstrip("/")
HOFFDESK_OLLAMA_MODEL = envstr("HOFFDESK_OLLAMA_MODEL", "llama3.2")
HOFFDESK_OLLAMA_TIMEOUT = envfloat("HOFFDESK_OLLAMA_TIMEOUT", 15.0)
# Optional vision model on that Ollama server for the publish page's alt text suggestion
# (gallery/alt_text.py; empty: the template suggestion), and how long the page waits for it.
HOFFDESK_OLLAMA_VISION_MODEL = envstr("HOFFDESK_OLLAMA_VISION_MODEL", "").strip()
HOFFDESK_OLLAMA_VISION_TIMEOUT = envfloat("HOFFDESK_OLLAMA_VISION_TIMEOUT", 8.0)
# Optional ComfyUI server as a second engine (generation/comfyui.py): its base URL (empty: no
# ComfyUI) and a bearer token for a server behind an auth proxy (also from HOFFDESK_COMFYUI_TOKEN_FILE).
HOFFDESK_COMFYUI_URL = envstr("HOFFDESK_COMFYUI_URL", "").strip().rstrip("/")
if HOFFDESK_COMFYUI_URL and not HOFFDESK_COMFYUI_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"HOFFDESK_COMFYUI_URL must start with http:// or https://: {HOFFDESK_COMFYUI_URL!r}")
HOFFDESK_COMFYUI_TOKEN = envsecret("HOFFDESK_COMFYUI_TOKEN") or ""
# The checkpoint file each profile's ComfyUI workflow names in our own PNGs (profile=file, comma-
# separated, laid over generation.profiles.COMFYUI_CHECKPOINTS; an empty file turns it off).
try:
    HOFFDESK_COMFYUI_CHECKPOINTS = comfyui_checkpoint_table(envstr("HOFFDESK_COMFYUI_CHECKPOINTS", ""))
except ValueError as exc:
    raise ImproperlyConfigured(f"HOFFDESK_COMFYUI_CHECKPOINTS: {exc}") from None
# A run is tried at most this many times when workers die under it (crash, kill, power cut).
HOFFDESK_RUN_MAX_ATTEMPTS = envint("HOFFDESK_RUN_MAX_ATTEMPTS", 3, minimum=1)
# Progress is written at most this often (seconds); the cancel flag is read at the same time.
HOFFDESK_PROGRESS_INTERVAL = envfloat("HOFFDESK_PROGRESS_INTERVAL", 0.5)
# Live previews: the worker decodes one every this many steps (0: none), at most one per 0.5 s.
HOFFDESK_PREVIEW_EVERY = envint("HOFFDESK_PREVIEW_EVERY", 2, minimum=0)
# A running run whose worker has been silent this long is taken as orphaned.
HOFFDESK_HEARTBEAT_INTERVAL = envfloat("HOFFDESK_HEARTBEAT_INTERVAL", 10.0, minimum=0.1)
HOFFDESK_STALE_AFTER = envfloat("HOFFDESK_STALE_AFTER", 120.0, minimum=1.0)
# One account cannot fill the GPU queue: at most this many of its runs queued or running (0: no limit).
HOFFDESK_USER_QUEUE_LIMIT = envint("HOFFDESK_USER_QUEUE_LIMIT", 10, minimum=0)
# The AUTOMATIC1111 and OpenAI image APIs wait this long (seconds) for a run, then answer 504; the run goes on.
HOFFDESK_IMAGE_API_WAIT = envfloat("HOFFDESK_IMAGE_API_WAIT", 300.0, minimum=1.0)
# ``runserver`` (``make run``) serves connections from a pool of reused threads, at most this many at once.
HOFFDESK_HTTP_THREADS = envint("HOFFDESK_HTTP_THREADS", 256, minimum=1)
# The OpenAI API's ``url`` answers link to the PNG without a token for this long (seconds), and only
# while the token that asked is not revoked and its user active: an hour, like OpenAI's own links.
HOFFDESK_IMAGE_URL_SECONDS = envint("HOFFDESK_IMAGE_URL_SECONDS", 3600, minimum=1)
# torch threads in the worker; 0 keeps torch's default. Fix it for byte-identical CPU output.
HOFFDESK_TORCH_THREADS = envint("HOFFDESK_TORCH_THREADS", 0, minimum=0)
# The GPU memory plan (issue 18): the card's size in GiB (0: what torch.cuda.mem_get_info finds
# free), and the GiB always left free for the desktop and other programs.
HOFFDESK_VRAM_GIB = envfloat("HOFFDESK_VRAM_GIB", 0.0)
HOFFDESK_VRAM_HEADROOM_GIB = envfloat("HOFFDESK_VRAM_HEADROOM_GIB", 1.0)
# Let the plan store a 16-bit UNet's or transformer's weights in fp8 (layerwise casting) when that is
# what makes a faster placement fit (Ampere cards and newer). Off: it changes the pixels slightly.
HOFFDESK_FP8_STORAGE = envbool("HOFFDESK_FP8_STORAGE", False)
# The GPU worker loads the default (or the last day's most used) model when it starts.
HOFFDESK_PRELOAD = envbool("HOFFDESK_PRELOAD", True)
# The worker takes runs of its loaded model first, but never passes a run over for longer than this (s).
HOFFDESK_SWITCH_WAIT = envfloat("HOFFDESK_SWITCH_WAIT", 120.0)
# GiB of RAM the GPU worker may keep evicted models in, so switching back is a copy, not a load from
# disk (0: off). FLUX.1-dev nf4 with its T5 takes ~17 GiB there, SDXL ~7 GiB.
HOFFDESK_RAM_CACHE_GIB = envfloat("HOFFDESK_RAM_CACHE_GIB", 0.0, minimum=0.0)
# Tests and bench/switching.py only: seconds slept in each model load, so a tiny model loads like a big one.
HOFFDESK_TEST_LOAD_DELAY = envfloat("HOFFDESK_TEST_LOAD_DELAY", 0.0)

# --- costs (the Costs page; issue 20) ------------------------------------------------------
# One currency for the whole price table: electricity, the cloud prices and the cloud budget.
HOFFDESK_CURRENCY = envstr("HOFFDESK_CURRENCY", "USD").strip() or "USD"
# What one kWh costs, in HOFFDESK_CURRENCY.
HOFFDESK_ELECTRICITY_PRICE = envfloat("HOFFDESK_ELECTRICITY_PRICE", 0.30)
# A run's energy where the card's own counter cannot be read (no NVML): this many watts x its GPU
# seconds, labelled as an estimate (350: an RTX 3080 Ti's board power). 0: record no estimate.
HOFFDESK_GPU_WATTS = envfloat("HOFFDESK_GPU_WATTS", 350.0)
# Which energy reader the GPU worker uses: "auto" (NVML when nvidia-ml-py and an NVIDIA GPU are
# there, else the estimate), "estimate" (never NVML), or a class's dotted path (another vendor).
HOFFDESK_ENERGY_READER = envstr("HOFFDESK_ENERGY_READER", "auto").strip() or "auto"
if HOFFDESK_ENERGY_READER not in ("auto", "estimate") and not re.fullmatch(r"[\w.]+\.\w+", HOFFDESK_ENERGY_READER):
    raise ImproperlyConfigured(
        f"HOFFDESK_ENERGY_READER must be auto, estimate or a reader class's dotted path, not {HOFFDESK_ENERGY_READER!r}"
    )
# Per-image cloud prices (model=price, comma-separated) laid over OpenAI's published ones
# (generation/cloud_prices.py), in HOFFDESK_CURRENCY.
try:
    HOFFDESK_CLOUD_PRICES = cloud_price_table(envstr("HOFFDESK_CLOUD_PRICES", ""))
except ValueError as exc:
    raise ImproperlyConfigured(f"HOFFDESK_CLOUD_PRICES: {exc}") from None
# The cloud engine (generation/cloud.py; issue 20): the OpenAI Images API through the official
# client, opt-in. No key (also HOFFDESK_CLOUD_API_KEY_FILE): no cloud anywhere, not even a button.
HOFFDESK_CLOUD_API_KEY = envsecret("HOFFDESK_CLOUD_API_KEY") or ""
HOFFDESK_CLOUD_MODEL = envstr("HOFFDESK_CLOUD_MODEL", "gpt-image-1").strip() or "gpt-image-1"
HOFFDESK_CLOUD_BASE_URL = envstr("HOFFDESK_CLOUD_BASE_URL", "https://api.openai.com/v1").strip().rstrip("/")
if not HOFFDESK_CLOUD_BASE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"HOFFDESK_CLOUD_BASE_URL must start with http:// or https://: {HOFFDESK_CLOUD_BASE_URL!r}"
    )
# The size asked for ("" : the model's landscape size, e.g. 1536x1024 for gpt-image-1).
HOFFDESK_CLOUD_SIZE = envstr("HOFFDESK_CLOUD_SIZE", "").strip()
if HOFFDESK_CLOUD_SIZE and not re.fullmatch(r"\d{1,5}x\d{1,5}", HOFFDESK_CLOUD_SIZE):
    raise ImproperlyConfigured(
        f"HOFFDESK_CLOUD_SIZE must be WIDTHxHEIGHT such as 1536x1024, not {HOFFDESK_CLOUD_SIZE!r}"
    )
# At most this much is spent in the cloud per calendar month, in HOFFDESK_CURRENCY (0: nothing).
HOFFDESK_CLOUD_MONTHLY_BUDGET = envfloat("HOFFDESK_CLOUD_MONTHLY_BUDGET", 10.0)
# A preset with cloud fallback goes to the cloud when no GPU worker was seen for this many minutes.
HOFFDESK_CLOUD_AFTER_MINUTES = envfloat("HOFFDESK_CLOUD_AFTER_MINUTES", 30.0, minimum=1.0)
# Seconds one cloud image may take before the request is given up.
HOFFDESK_CLOUD_TIMEOUT = envfloat("HOFFDESK_CLOUD_TIMEOUT", 180.0, minimum=1.0)
if HOFFDESK_CLOUD_API_KEY and HOFFDESK_CLOUD_MODEL not in HOFFDESK_CLOUD_PRICES:
    raise ImproperlyConfigured(
        f"HOFFDESK_CLOUD_MODEL {HOFFDESK_CLOUD_MODEL!r} has no price: add it to HOFFDESK_CLOUD_PRICES "
        f"(e.g. {HOFFDESK_CLOUD_MODEL}=0.05), so the monthly budget can be kept."
    )

# --- queue (django-q2, ORM broker on the same database; see docs/queue.md for why) ----------

HOFFDESK_TASK_TIMEOUT = envint("HOFFDESK_TASK_TIMEOUT", 1800, minimum=2)
Q_CLUSTER = {
    "name": "hoffdesk",
    "orm": "default",
    "workers": envint("HOFFDESK_WORKERS", 1, minimum=1),
    "queue_limit": 1,
    "timeout": HOFFDESK_TASK_TIMEOUT,
    "retry": 2 * HOFFDESK_TASK_TIMEOUT + 600,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "poll": envfloat("HOFFDESK_QUEUE_POLL", 0.05, minimum=0.01),
    "recycle": 1000,
    "save_limit": 1000,
    "label": "Worker tasks",
    # Publishing, thumbnails and sweeps never wait behind a GPU run: they go to the "light"
    # cluster (``async_task(..., cluster="light")``), started with
    # ``Q_CLUSTER_NAME=light manage.py qcluster``. Its name is also its ORM queue's name.
    "ALT_CLUSTERS": {
        "light": {
            "workers": envint("HOFFDESK_LIGHT_WORKERS", 2, minimum=1),
            "queue_limit": 4,
            "timeout": 600,
            # A light cluster holds up to queue_limit + workers tasks: retry > 6 x timeout.
            "retry": 4200,
            "label": "Light tasks",
        }
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "generation": {"handlers": ["console"], "level": envstr("HOFFDESK_LOG_LEVEL", "INFO")},
        "gallery": {"handlers": ["console"], "level": envstr("HOFFDESK_LOG_LEVEL", "INFO")},
        # django-q2 logs as "django-q" (not the package name).
        "django-q": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
