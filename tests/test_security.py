"""Production safety: no debug pages off loopback, HTTPS settings that pass ``check --deploy``,
and login attempts throttled per username and per address (django-axes) without logging secrets."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_user
from tests.s3_fixtures import free_port

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
LOCKOUT_TEXT = "Too many failed login attempts"


def child_env(data_dir: Path, **env: str) -> dict[str, str]:
    """This environment without HOFFDESK_ variables or DATABASE_URL, plus the data folder. Without
    DJANGO_ALLOW_ASYNC_UNSAFE too, which the browser tests need and ``check --deploy`` reports."""
    dropped = {"DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    full = {k: v for k, v in os.environ.items() if not k.startswith("HOFFDESK_") and k not in dropped}
    full.update({"HOFFDESK_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "hoffdesk_images.settings", **env})
    return full


def load_settings(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    code = "import django; django.setup(); from django.conf import settings as s; print(s.DEBUG)"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=child_env(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def manage(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=child_env(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def production_env() -> dict[str, str]:
    return {
        "HOFFDESK_HTTPS": "true",
        "HOFFDESK_DEBUG": "false",
        "HOFFDESK_SECRET_KEY": secrets.token_urlsafe(50),  # 67 characters
        "HOFFDESK_ALLOWED_HOSTS": "images.example.com",
    }


# --- debug only on loopback ------------------------------------------------------------------


def test_debug_with_a_public_allowed_host_refuses_to_start(tmp_path) -> None:
    result = load_settings(tmp_path, HOFFDESK_DEBUG="true", HOFFDESK_ALLOWED_HOSTS="images.example.com")
    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured" in result.stderr
    assert "HOFFDESK_DEBUG" in result.stderr and "images.example.com" in result.stderr
    assert "traceback" in result.stderr.lower()  # says why: debug pages show tracebacks and settings


@pytest.mark.parametrize("address", ["0.0.0.0:8000", "0:8000", "[::]:8000", "192.0.2.10:8000"])
def test_debug_on_a_non_loopback_address_refuses_to_start(tmp_path, address) -> None:
    result = load_settings(tmp_path, HOFFDESK_DEBUG="true", HOFFDESK_ADDRESS=address)
    assert result.returncode != 0, result.stdout
    assert "HOFFDESK_DEBUG" in result.stderr and address in result.stderr


def test_debug_with_the_defaults_starts(tmp_path) -> None:
    result = load_settings(tmp_path, HOFFDESK_DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


@pytest.mark.parametrize(
    "env",
    [
        {"HOFFDESK_ADDRESS": "8000"},
        {"HOFFDESK_ADDRESS": "[::1]:8001"},
        {"HOFFDESK_ADDRESS": "127.0.0.2:8000"},
        {"HOFFDESK_ADDRESS": "localhost:9000", "HOFFDESK_ALLOWED_HOSTS": "localhost,127.0.0.1,::1,[::1]"},
    ],
)
def test_debug_on_loopback_addresses_starts(tmp_path, env) -> None:
    result = load_settings(tmp_path, HOFFDESK_DEBUG="true", **env)
    assert result.returncode == 0, result.stderr


def test_without_debug_any_address_starts(tmp_path) -> None:
    result = load_settings(tmp_path, HOFFDESK_ALLOWED_HOSTS="images.example.com", HOFFDESK_ADDRESS="0.0.0.0:8000")
    assert result.returncode == 0, result.stderr


# --- HTTPS ---------------------------------------------------------------------------------------


def test_check_deploy_is_clean_behind_https(tmp_path) -> None:
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **production_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "no issues" in output
    assert "WARNINGS" not in output


def test_check_deploy_warns_without_https(tmp_path) -> None:
    """The clean run above means something: the same settings without HOFFDESK_HTTPS warn."""
    env = production_env()
    del env["HOFFDESK_HTTPS"]
    result = manage(tmp_path, "check", "--deploy", **env)
    output = result.stdout + result.stderr
    assert "WARNINGS" in output
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in output


HTTPS_REQUESTS = """
import json, django
django.setup()
from django.test import Client, RequestFactory
from axes.helpers import get_client_ip_address
c = Client(HTTP_HOST="images.example.com")
behind_proxy = RequestFactory().post(
    "/login/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.66, 203.0.113.5"
)
plain = c.get("/login/")
health = c.get("/healthz")
proxied = c.get("/login/", HTTP_X_FORWARDED_PROTO="https")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "health": [health.status_code, health.get("Location")],
    "proxied": [proxied.status_code, proxied.get("Strict-Transport-Security")],
    "csrf_cookie_secure": bool(proxied.cookies["csrftoken"]["secure"]),
    "frame": proxied.get("X-Frame-Options"),
    "nosniff": proxied.get("X-Content-Type-Options"),
    "referrer": proxied.get("Referrer-Policy"),
    "client_ip": get_client_ip_address(behind_proxy),
}))
"""


def test_https_redirects_sets_hsts_and_secure_cookies_but_leaves_healthz_on_http(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", HTTPS_REQUESTS],
        cwd=ROOT,
        env=child_env(tmp_path, **production_env()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["plain"] == [301, "https://images.example.com/login/"]
    assert seen["health"][0] != 301 and seen["health"][1] is None  # plain-HTTP monitoring still works
    assert seen["proxied"] == [200, "max-age=31536000; includeSubDomains; preload"]
    assert seen["csrf_cookie_secure"] is True
    assert (seen["frame"], seen["nosniff"], seen["referrer"]) == ("DENY", "nosniff", "same-origin")
    # Throttling counts the address the proxy appended, not the one the client put before it.
    assert seen["client_ip"] == "203.0.113.5"


def test_headers_sent_without_https(client) -> None:
    response = client.get("/login/")
    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response


# --- login throttling ----------------------------------------------------------------------------


def test_without_https_a_forwarded_for_header_is_not_trusted(rf) -> None:
    from axes.helpers import get_client_ip_address

    request = rf.post("/login/", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert get_client_ip_address(request) == "198.51.100.7"


def attempt(client, username: str, password: str, address: str):  # type: ignore[no-untyped-def]
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def assert_logged_in(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 302, response.content[:500]
    assert "_auth_user_id" in response.wsgi_request.session


def assert_refused(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429, response.content[:500]
    assert LOCKOUT_TEXT in response.content.decode()
    assert "15 minutes" in response.content.decode()
    assert "_auth_user_id" not in response.wsgi_request.session


def test_a_wrong_password_below_the_limit_shows_the_form_again(client) -> None:
    make_user("editor")
    response = attempt(client, "editor", "wrong", "198.51.100.1")
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_five_failures_for_one_username_from_one_address_refuse_the_right_password(client) -> None:
    make_user("editor")
    for _ in range(4):
        assert attempt(client, "editor", "wrong", "198.51.100.1").status_code == 200
    assert_refused(attempt(client, "editor", "wrong", "198.51.100.1"))  # the fifth locks
    assert_refused(attempt(client, "editor", "editor-pass-123", "198.51.100.1"))


def test_an_address_alone_is_locked_after_its_higher_limit_spread_over_usernames(client, settings) -> None:
    limit = settings.HOFFDESK_LOGIN_ADDRESS_FAILURE_LIMIT
    assert limit > settings.AXES_FAILURE_LIMIT
    make_user("editor")
    make_user("onlooker")
    for n in range(limit - 1):
        attempt(client, f"guess{n}", "wrong", "198.51.100.2")
    # Below the address's limit: an account with no failures of its own still logs in there.
    assert_logged_in(attempt(client, "onlooker", "onlooker-pass-123", "198.51.100.2"))
    client.logout()
    # That success reset only the onlooker's own count there: the address's failures still stand.
    assert attempt(client, "guess-last", "wrong", "198.51.100.2").status_code == 429
    assert_refused(attempt(client, "editor", "editor-pass-123", "198.51.100.2"))
    # Only that address: the same account logs in from elsewhere.
    assert_logged_in(attempt(client, "editor", "editor-pass-123", "198.51.100.3"))


def test_a_strangers_failures_do_not_lock_the_owner_out_from_their_own_address(client, settings) -> None:
    make_user("editor")
    for _ in range(settings.AXES_FAILURE_LIMIT * 2):  # a stranger guesses editor's password
        attempt(client, "editor", "wrong", "203.0.113.7")
    assert_refused(attempt(client, "editor", "editor-pass-123", "203.0.113.7"))  # the stranger is locked
    assert_logged_in(attempt(client, "editor", "editor-pass-123", "198.51.100.9"))  # the owner is not


def test_failures_for_one_username_spread_over_addresses_lock_no_one(client, settings) -> None:
    make_user("editor")
    for n in range(settings.AXES_FAILURE_LIMIT * 2):
        attempt(client, "editor", "wrong", f"203.0.113.{n + 1}")
    assert_logged_in(attempt(client, "editor", "editor-pass-123", "203.0.113.99"))


def test_a_success_before_the_limit_resets_the_count(client) -> None:
    make_user("editor")
    for _ in range(4):
        attempt(client, "editor", "wrong", "198.51.100.4")
    assert_logged_in(attempt(client, "editor", "editor-pass-123", "198.51.100.4"))
    client.logout()
    for _ in range(4):
        assert attempt(client, "editor", "wrong", "198.51.100.4").status_code == 200
    assert_logged_in(attempt(client, "editor", "editor-pass-123", "198.51.100.4"))


def test_no_password_in_any_log_line_or_stored_attempt(client, caplog) -> None:
    from axes.models import AccessAttempt, AccessLog

    make_user("editor")
    wrong = "Wr0ng-Secret-Guess-7731"
    caplog.set_level(logging.DEBUG)
    for _ in range(6):  # failures, the lockout, and one more while locked out
        attempt(client, "editor", wrong, "198.51.100.5")
    assert_refused(attempt(client, "editor", "editor-pass-123", "198.51.100.5"))
    assert "AXES" in caplog.text  # axes did log the attempts
    logged = caplog.text + "".join(repr(record.args) + repr(record.__dict__) for record in caplog.records)
    for password in (wrong, "editor-pass-123"):
        assert password not in logged
        # The admin shows attempts with their POST data: cleansed too.
        for row in AccessAttempt.objects.values("get_data", "post_data"):
            assert password not in row["get_data"] + row["post_data"]
        assert not AccessLog.objects.filter(username__contains=password).exists()


# --- no secret in any log line or page --------------------------------------------------------


def test_database_url_errors_never_show_its_password(tmp_path) -> None:
    """A DATABASE_URL that cannot be parsed, or whose server does not answer: the command fails
    naming the problem, and neither the password nor the signing key is in what it prints."""
    password = "db-pw-" + secrets.token_hex(8)
    key = secrets.token_urlsafe(50)
    for url, says in (
        (f"postgresx://hoff:{password}@db.example/hoff", "DATABASE_URL"),
        (f"postgresql://hoff:{password}@127.0.0.1:{free_port()}/hoff", "connection"),
    ):
        result = manage(tmp_path, "migrate", DATABASE_URL=url, HOFFDESK_SECRET_KEY=key)
        output = result.stdout + result.stderr
        assert result.returncode != 0 and says in output, output[-2000:]
        assert password not in output and key not in output


def test_a_partial_bucket_configuration_names_the_missing_variables_not_the_secret(tmp_path) -> None:
    secret = "r2-secret-" + secrets.token_hex(8)
    result = load_settings(tmp_path, HOFFDESK_R2_SECRET_ACCESS_KEY=secret, HOFFDESK_R2_BUCKET="images")
    assert result.returncode != 0
    assert "HOFFDESK_R2_ENDPOINT_URL" in result.stderr and secret not in result.stderr


def debug_500_page(request: Any) -> str:
    """The technical 500 page of an error raised here (the page shows this frame's locals only)."""
    from django.views.debug import technical_500_response

    try:
        raise RuntimeError("something broke")
    except RuntimeError:
        return technical_500_response(request, *sys.exc_info()).content.decode()


def test_the_debug_error_page_hides_database_url_and_the_authorization_header(rf, settings) -> None:
    """The technical 500 page (debug on loopback only) lists settings and the request's META,
    which under the development server holds the whole environment."""
    settings.DEBUG = True
    password, token = "db-pw-" + secrets.token_hex(8), "hd_" + secrets.token_hex(16)
    request = rf.get(
        "/broken",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        DATABASE_URL=f"postgresql://hoff:{password}@db/hoff",
        HOFFDESK_R2_SECRET_ACCESS_KEY="r2-" + password,
    )
    page = debug_500_page(request)
    assert "something broke" in page and "DATABASE_URL" in page and "HTTP_AUTHORIZATION" in page
    assert password not in page and token not in page
    assert settings.SECRET_KEY not in page
