"""Publishing storage settings: local folder or R2 (django-storages' S3 backend), checked
against moto's S3 server over real HTTP, with a proxy that records the requests clients send."""

from __future__ import annotations

import json
import mimetypes
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.base import ContentFile

from hoffdesk_images.settings import (
    CANDIDATES_S3_VARIABLES,
    PUBLISH_CACHE_CONTROL,
    R2_VARIABLES,
    s3_storage_options,
)
from tests.s3_fixtures import PUBLIC_BASE_URL, RecordedRequest, S3Server

ROOT = Path(__file__).resolve().parent.parent
S3_BACKEND = "storages.backends.s3.S3Storage"
SETUP = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='hoffdesk_images.settings'; django.setup()"

# A few bytes are enough: nothing here decodes the image.
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\r\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"


def run_settings(tmp_path: Path, code: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """``django.setup()`` in a child process with only the given HOFFDESK_ variables."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("HOFFDESK_") and k != "DATABASE_URL"}
    full.update({"HOFFDESK_DATA_DIR": str(tmp_path), **env})
    full.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "-c", SETUP + ("; " + code if code else "")],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def named_missing(stderr: str) -> set[str]:
    """The variables the ImproperlyConfigured message says are missing."""
    match = re.search(r"ImproperlyConfigured: (.+?) must be set too", stderr)
    assert match, stderr
    return set(match.group(1).split(", "))


def some_r2_env() -> dict[str, str]:
    return {
        "HOFFDESK_R2_ENDPOINT_URL": "http://127.0.0.1:9",
        "HOFFDESK_R2_BUCKET": "images",
        "HOFFDESK_R2_ACCESS_KEY_ID": "id",
        "HOFFDESK_R2_SECRET_ACCESS_KEY": "secret",
        "HOFFDESK_R2_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
    }


def some_candidates_env() -> dict[str, str]:
    return {
        "HOFFDESK_CANDIDATES_ENDPOINT_URL": "http://127.0.0.1:9",
        "HOFFDESK_CANDIDATES_BUCKET": "candidates",
        "HOFFDESK_CANDIDATES_ACCESS_KEY_ID": "id",
        "HOFFDESK_CANDIDATES_SECRET_ACCESS_KEY": "secret",
    }


# --- all or none ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "missing",
    [
        ("HOFFDESK_R2_ACCESS_KEY_ID", "HOFFDESK_R2_PUBLIC_BASE_URL"),
        ("HOFFDESK_R2_ENDPOINT_URL", "HOFFDESK_R2_SECRET_ACCESS_KEY"),
    ],
)
def test_some_r2_variables_fail_naming_exactly_the_missing_ones(tmp_path, missing) -> None:
    env = {k: v for k, v in some_r2_env().items() if k not in missing}
    assert len(env) == 3
    result = run_settings(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named_missing(result.stderr) == set(missing)


def test_an_empty_r2_variable_counts_as_missing(tmp_path) -> None:
    result = run_settings(tmp_path, **{**some_r2_env(), "HOFFDESK_R2_BUCKET": ""})
    assert result.returncode != 0
    assert named_missing(result.stderr) == {"HOFFDESK_R2_BUCKET"}


def test_the_r2_secret_may_come_from_a_file(tmp_path) -> None:
    secret_file = tmp_path / "r2-secret"
    secret_file.write_text("from-a-file\n")
    env = some_r2_env()
    del env["HOFFDESK_R2_SECRET_ACCESS_KEY"]
    code = "from django.conf import settings as s; print(s.STORAGES['publish']['OPTIONS']['secret_key'])"
    result = run_settings(tmp_path, code, HOFFDESK_R2_SECRET_ACCESS_KEY_FILE=str(secret_file), **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-a-file"


def test_some_candidates_variables_fail_naming_exactly_the_missing_ones(tmp_path) -> None:
    missing = ("HOFFDESK_CANDIDATES_BUCKET", "HOFFDESK_CANDIDATES_SECRET_ACCESS_KEY")
    env = {k: v for k, v in some_candidates_env().items() if k not in missing}
    result = run_settings(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named_missing(result.stderr) == set(missing)


def test_the_variable_lists_are_what_the_settings_read() -> None:
    assert len(R2_VARIABLES) == 5
    assert all(name.startswith("HOFFDESK_R2_") for name in R2_VARIABLES)
    assert len(CANDIDATES_S3_VARIABLES) == 4
    assert set(some_r2_env()) == set(R2_VARIABLES)
    assert set(some_candidates_env()) == set(CANDIDATES_S3_VARIABLES)


def test_no_r2_variables_publish_to_the_local_folder(tmp_path) -> None:
    code = (
        "from django.conf import settings as s; p = s.STORAGES['publish']; "
        "print(json.dumps([p['BACKEND'], str(p['OPTIONS']['location']), p['OPTIONS']['base_url'], "
        "s.PUBLISH_IS_LOCAL, s.STORAGES['candidates']['BACKEND']]))"
    )
    result = run_settings(tmp_path, "import json; " + code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "django.core.files.storage.FileSystemStorage",
        str(tmp_path / "publish"),
        "/published/",
        True,
        "django.core.files.storage.FileSystemStorage",
    ]

    publish_dir = tmp_path / "elsewhere"
    result = run_settings(tmp_path, "import json; " + code, HOFFDESK_PUBLISH_DIR=str(publish_dir))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[1] == str(publish_dir)


def test_all_r2_variables_publish_to_s3_from_a_child_process(tmp_path, r2_env, s3_server, s3_bucket) -> None:
    """The settings path itself (not the in-process fixture): the child uploads through the proxy."""
    code = (
        "import json; from django.conf import settings as s; "
        "from django.core.files.storage import storages; from django.core.files.base import ContentFile; "
        "st = storages['publish']; name = st.save('child/abc-hero.webp', ContentFile(b'child-bytes')); "
        "print(json.dumps([s.STORAGES['publish']['BACKEND'], s.PUBLISH_IS_LOCAL, s.PUBLISH_BASE_URL, "
        "type(st).__module__ + '.' + type(st).__name__, name, st.url(name)]))"
    )
    result = run_settings(tmp_path, code, **r2_env)
    assert result.returncode == 0, result.stderr
    backend, is_local, base_url, storage_class, name, url = json.loads(result.stdout)
    assert backend == S3_BACKEND
    assert storage_class == S3_BACKEND
    assert is_local is False
    assert base_url == PUBLIC_BASE_URL + "/"
    assert url == f"{PUBLIC_BASE_URL}/child/abc-hero.webp"

    stored = s3_server.objects(s3_bucket)
    assert stored[name]["Body"] == b"child-bytes"
    assert stored[name]["CacheControl"] == PUBLISH_CACHE_CONTROL
    puts = [r for r in s3_server.requests if r.method == "PUT"]
    assert len(puts) == 1
    assert_r2_compatible(puts[0])


def test_all_candidates_variables_give_a_private_s3_storage_with_signed_urls(tmp_path) -> None:
    code = (
        "import json; from django.conf import settings as s; from django.core.files.storage import storages; "
        "c = s.STORAGES['candidates']; "
        "print(json.dumps([c['BACKEND'], c['OPTIONS'].get('querystring_auth', True), "
        "c['OPTIONS'].get('custom_domain'), storages['candidates'].url('run-1/0.png')]))"
    )
    result = run_settings(tmp_path, code, **some_candidates_env())
    assert result.returncode == 0, result.stderr
    backend, querystring_auth, custom_domain, url = json.loads(result.stdout)
    assert backend == S3_BACKEND
    assert querystring_auth is True
    assert custom_domain is None
    assert url.startswith("http://127.0.0.1:9/candidates/run-1/0.png?")
    assert "X-Amz-Signature=" in url


# --- the publish storage on S3 ----------------------------------------------------------------


def assert_r2_compatible(put: RecordedRequest) -> None:
    """What R2 rejects (docs/design.md): flexible checksums, trailers, aws-chunked streaming."""
    checksum_headers = [k for k in put.headers if k.lower().startswith("x-amz-checksum-")]
    assert not checksum_headers, f"checksum headers sent: {checksum_headers}"
    assert put.header("x-amz-sdk-checksum-algorithm") is None
    assert put.header("x-amz-trailer") is None
    assert "aws-chunked" not in (put.header("Content-Encoding") or "")
    assert put.header("x-amz-decoded-content-length") is None
    sha = put.header("x-amz-content-sha256") or ""
    assert not sha.startswith("STREAMING-"), sha
    # SigV4 with the region R2 wants.
    assert "AWS4-HMAC-SHA256" in (put.header("Authorization") or "")
    assert "/auto/s3/aws4_request" in (put.header("Authorization") or "")


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("flux-on-a-3080/abc123-hero.webp", "image/webp"),
        ("flux-on-a-3080/abc123-hero.jpg", "image/jpeg"),
        ("flux-on-a-3080/abc123-hero.avif", "image/avif"),
    ],
)
def test_saving_a_rendition_stores_a_public_immutable_object(
    publish_storage_r2, s3_server, s3_bucket, name, content_type
) -> None:
    storage = publish_storage_r2
    saved = storage.save(name, ContentFile(WEBP))
    assert saved == name  # file_overwrite: content-hash keys are never renamed

    stored = s3_server.objects(s3_bucket)
    assert set(stored) == {name}
    assert stored[name]["Body"] == WEBP
    # Guessed from the name by mimetypes (see the test below for where that guess comes from).
    assert stored[name]["ContentType"] == content_type
    assert stored[name]["CacheControl"] == "public, max-age=31536000, immutable"

    puts = [r for r in s3_server.requests if r.method == "PUT"]
    assert len(puts) == 1
    assert puts[0].path == f"/{s3_bucket}/{name}"
    assert puts[0].body_length == len(WEBP)
    assert puts[0].header("Content-Type") == content_type
    assert puts[0].header("Cache-Control") == PUBLISH_CACHE_CONTROL
    assert puts[0].header("x-amz-acl") is None  # R2 has no ACLs
    assert_r2_compatible(puts[0])


def test_public_urls_are_unsigned_on_the_cdn_domain(publish_storage_r2, s3_server) -> None:
    url = publish_storage_r2.url("flux-on-a-3080/abc123-hero.webp")
    assert url == "https://images.hoffdesk.test/flux-on-a-3080/abc123-hero.webp"
    assert urlparse(url).query == ""
    assert s3_server.requests == []  # a URL is made without asking the server


def test_exists_and_open_go_to_the_bucket(publish_storage_r2, s3_server, s3_bucket) -> None:
    storage = publish_storage_r2
    assert storage.exists("slug/abc-hero.webp") is False
    assert [r.method for r in s3_server.requests] == ["HEAD"]
    storage.save("slug/abc-hero.webp", ContentFile(WEBP))
    s3_server.clear()

    assert storage.exists("slug/abc-hero.webp") is True
    assert [(r.method, r.path) for r in s3_server.requests] == [("HEAD", f"/{s3_bucket}/slug/abc-hero.webp")]
    with storage.open("slug/abc-hero.webp") as f:
        assert f.read() == WEBP
    assert storage.size("slug/abc-hero.webp") == len(WEBP)
    gets = [r for r in s3_server.requests if r.method == "GET"]
    assert gets
    assert all(r.header("x-amz-checksum-mode") is None for r in gets)


def test_saving_the_same_name_again_overwrites_in_place(publish_storage_r2, s3_server, s3_bucket) -> None:
    storage = publish_storage_r2
    assert storage.save("slug/abc-hero.webp", ContentFile(b"one")) == "slug/abc-hero.webp"
    assert storage.save("slug/abc-hero.webp", ContentFile(b"two")) == "slug/abc-hero.webp"
    assert {k: v["Body"] for k, v in s3_server.objects(s3_bucket).items()} == {"slug/abc-hero.webp": b"two"}


def test_boto3_defaults_would_send_checksums_r2_rejects(publish_storage_r2, r2_env, s3_server, monkeypatch) -> None:
    """Proves the header assertions bite: the same options without the two ``when_required``
    settings (botocore's default is ``when_supported``) send a CRC32 checksum and fail them."""
    from storages.backends.s3 import S3Storage

    for name in ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION"):
        monkeypatch.delenv(name, raising=False)
    config = publish_storage_r2.client_config
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"

    options = s3_storage_options(
        endpoint_url=r2_env["HOFFDESK_R2_ENDPOINT_URL"],
        bucket=r2_env["HOFFDESK_R2_BUCKET"],
        access_key=r2_env["HOFFDESK_R2_ACCESS_KEY_ID"],
        secret_key=r2_env["HOFFDESK_R2_SECRET_ACCESS_KEY"],
        public_base_url=PUBLIC_BASE_URL,
    )
    options["client_config"] = Config(
        signature_version=config.signature_version,
        retries=config.retries,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
    )
    S3Storage(**options).save("slug/default-config.webp", ContentFile(WEBP))

    puts = [r for r in s3_server.requests if r.method == "PUT"]
    assert len(puts) == 1
    assert puts[0].header("x-amz-checksum-crc32") is not None
    assert puts[0].header("x-amz-sdk-checksum-algorithm") == "CRC32"
    with pytest.raises(AssertionError, match="checksum headers sent"):
        assert_r2_compatible(puts[0])


def test_webp_content_type_comes_from_the_system_mime_table(publish_storage_r2, s3_server, s3_bucket, monkeypatch):
    """django-storages guesses ContentType with ``mimetypes.guess_type(name)``. Python 3.11's own
    table has no ``.webp`` (3.13 adds it): here image/webp comes from /etc/mime.types. Without
    that file a ``.webp`` would be stored as the backend's default, application/octet-stream;
    a ``content_type`` on the file object wins over the guess."""
    import storages.backends.s3 as s3_backend

    builtin_only = mimetypes.MimeTypes(filenames=())
    monkeypatch.setattr(s3_backend.mimetypes, "guess_type", builtin_only.guess_type)
    expected_guess = builtin_only.guess_type("x.webp")[0] or "application/octet-stream"

    publish_storage_r2.save("slug/guessed-hero.webp", ContentFile(WEBP))
    explicit = ContentFile(WEBP)
    explicit.content_type = "image/webp"  # type: ignore[attr-defined]
    publish_storage_r2.save("slug/explicit-hero.webp", explicit)

    stored = s3_server.objects(s3_bucket)
    assert stored["slug/guessed-hero.webp"]["ContentType"] == expected_guess
    assert stored["slug/explicit-hero.webp"]["ContentType"] == "image/webp"


# --- failures ---------------------------------------------------------------------------------


def test_a_missing_bucket_is_a_client_error(s3_server, s3_bucket) -> None:
    from storages.backends.s3 import S3Storage

    options = s3_storage_options(
        endpoint_url=s3_server.endpoint_url,
        bucket=s3_bucket + "-missing",
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        public_base_url=PUBLIC_BASE_URL,
    )
    with pytest.raises(ClientError) as caught:
        S3Storage(**options).save("slug/abc-hero.webp", ContentFile(WEBP))
    assert caught.value.response["Error"]["Code"] == "NoSuchBucket"


@pytest.fixture(scope="module")
def s3_server_with_auth(tmp_path_factory):
    """moto checking signatures (the shared server accepts any key, as moto does by default)."""
    server = S3Server(tmp_path_factory.mktemp("moto-auth"), require_auth=True)
    try:
        yield server
    finally:
        server.close()


def test_a_wrong_secret_key_is_a_client_error(s3_server_with_auth) -> None:
    from storages.backends.s3 import S3Storage

    server = s3_server_with_auth
    server.create_bucket("auth-bucket")

    def storage(secret: str) -> S3Storage:
        return S3Storage(
            **s3_storage_options(
                endpoint_url=server.endpoint_url,
                bucket="auth-bucket",
                access_key=server.access_key,
                secret_key=secret,
                public_base_url=PUBLIC_BASE_URL,
            )
        )

    storage(server.secret_key).save("slug/right.webp", ContentFile(WEBP))
    with pytest.raises(ClientError) as caught:
        storage("not-the-secret").save("slug/wrong.webp", ContentFile(WEBP))
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert set(server.objects("auth-bucket")) == {"slug/right.webp"}


def test_an_unreachable_server_fails_the_save_and_a_restart_recovers(publish_storage_r2, s3_server, s3_bucket):
    storage = publish_storage_r2
    s3_server.stop()
    try:
        with pytest.raises(BotoCoreError):  # ConnectionClosedError: the proxy answers nothing
            storage.save("slug/abc-hero.webp", ContentFile(WEBP))
        assert s3_server.requests, "the client did try"
    finally:
        s3_server.restart()
    assert s3_server.objects(s3_bucket) == {}  # moto forgot everything; restart made the bucket again
    storage.save("slug/abc-hero.webp", ContentFile(WEBP))
    assert set(s3_server.objects(s3_bucket)) == {"slug/abc-hero.webp"}
