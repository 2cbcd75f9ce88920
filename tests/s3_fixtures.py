"""S3 over real HTTP for tests: moto's standalone server behind a proxy that records requests.

Clients (django-storages, worker processes) talk to ``S3Server.endpoint_url``, the proxy; the
proxy forwards every request verbatim to ``moto_server`` and records what it received, so a test
can assert on the exact headers an S3 client sent (R2 rejects some of boto3's defaults, see
docs/design.md). The helper methods (``create_bucket``, ``objects``) talk to moto directly, so they
never show up in ``requests``.

Stopping moto (``stop()``) simulates the storage being unreachable: the proxy then closes each
connection without an answer, which botocore reports as a connection error. moto keeps its state
in memory, so ``restart()`` recreates the buckets made through ``create_bucket`` (empty).
"""

from __future__ import annotations

import atexit
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REGION = "auto"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
PUBLIC_BASE_URL = "https://images.hoffdesk.test"

# Not forwarded: they describe this hop, not the request (the body is forwarded de-chunked).
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection", "expect"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the proxy received it (header names as sent; look up case-insensitively
    with ``header()``)."""

    method: str
    path: str
    headers: dict[str, str]
    body_length: int

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


class _ProxyHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 so that ``Expect: 100-continue`` (botocore sends it on PUT) is answered at once.
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields of the HTTP chunked encoding
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self) -> None:
        body = self._read_body()
        headers = {key: value for key, value in self.headers.items()}
        self.server.owner._record(RecordedRequest(self.command, self.path, headers, len(body)))

        upstream = {key: value for key, value in headers.items() if key.lower() not in _HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            upstream = {key: value for key, value in upstream.items() if key.lower() != "content-length"}
            upstream["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection("127.0.0.1", self.server.owner.moto_port, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in upstream.items():
                conn.putheader(key, value)
            conn.endheaders(body or None)
            response = conn.getresponse()
            payload = response.read()
        except OSError:
            # moto is down: answer nothing, like an unreachable host that resets the connection.
            self.close_connection = True
            return
        finally:
            conn.close()

        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() in _HOP_BY_HOP or key.lower() == "content-length":
                continue
            self.send_header(key, value)
        if self.command == "HEAD":
            # A HEAD answer states the length of the body a GET would have had.
            self.send_header("Content-Length", response.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _forward


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: S3Server, port: int) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", port), _ProxyHandler)


class S3Server:
    """``moto_server`` in a subprocess plus a recording reverse proxy in a thread."""

    def __init__(self, log_dir: Path | None = None, *, require_auth: bool = False) -> None:
        """``require_auth``: moto checks SigV4 signatures (by default it accepts any key); the
        keys to use are then made at each start, in ``access_key`` and ``secret_key``."""
        self.require_auth = require_auth
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.moto_port = free_port()
        self.proxy_port = free_port()
        self.log_path = Path(log_dir or tempfile.mkdtemp(prefix="moto-")) / "moto_server.log"
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._buckets: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._proxy = _ProxyServer(self, self.proxy_port)
        self._proxy_thread = threading.Thread(target=self._proxy.serve_forever, name="s3-proxy", daemon=True)
        self._proxy_thread.start()
        self._admin: Any = None
        atexit.register(self.stop)  # moto runs in its own session: never leave it behind
        try:
            self.start()
        except BaseException:
            self._proxy.shutdown()
            self._proxy.server_close()
            raise

    # --- addresses ---------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """Where clients should send S3 requests: the recording proxy."""
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def moto_url(self) -> str:
        """moto itself, bypassing the proxy (nothing is recorded)."""
        return f"http://127.0.0.1:{self.moto_port}"

    # --- recorded requests -------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests the proxy has received since the last ``clear()``."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    # --- the moto process --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30) -> None:
        if self.running:
            return
        moto_server = Path(sys.executable).parent / "moto_server"
        env = dict(os.environ)
        if self.require_auth:
            # moto serves this many requests unauthenticated, then checks keys made through IAM.
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        else:
            env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [str(moto_server), "-H", "127.0.0.1", "-p", str(self.moto_port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self._proc.returncode}:\n{self.log()[-4000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=2)
                try:
                    conn.request("GET", "/moto-api/")
                    conn.getresponse().read()
                finally:
                    conn.close()
            except OSError:
                time.sleep(0.1)
                continue
            self._admin = None
            if self.require_auth:
                self._make_keys()
            return
        self.stop()
        raise RuntimeError(f"moto_server did not answer within {timeout} s:\n{self.log()[-4000:]}")

    def _make_keys(self) -> None:
        """An IAM user allowed everything, and its keys (the three unauthenticated requests)."""
        import json

        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.moto_url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        iam.create_user(UserName="hoffdesk-test")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="hoffdesk-test", PolicyName="everything", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="hoffdesk-test")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    def stop(self) -> None:
        """Stop moto (its state is lost); the proxy keeps listening and drops connections."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self) -> None:
        """Start moto again (if stopped) and recreate, empty, the buckets made with create_bucket."""
        self.stop()
        self.start()
        for name in self._buckets:
            self._admin_client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        self._proxy.shutdown()
        self._proxy.server_close()
        self._proxy_thread.join(timeout=10)

    # --- buckets and objects (straight to moto) ----------------------------------------------

    def _admin_client(self) -> Any:
        if self._admin is None:
            import boto3

            self._admin = boto3.client(
                "s3",
                endpoint_url=self.moto_url,
                region_name=REGION,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
            )
        return self._admin

    def create_bucket(self, name: str) -> None:
        self._admin_client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        if name not in self._buckets:
            self._buckets.append(name)

    def delete_bucket(self, name: str) -> None:
        """Empty and delete a bucket; forget it for ``restart()``."""
        if name in self._buckets:
            self._buckets.remove(name)
        client = self._admin_client()
        for key in self.objects(name, with_bodies=False):
            client.delete_object(Bucket=name, Key=key)
        client.delete_bucket(Bucket=name)

    def objects(self, bucket: str, *, with_bodies: bool = True) -> dict[str, dict[str, Any]]:
        """Every object in the bucket: key -> {"Body": bytes, "ContentType", "CacheControl",
        "ContentLength", "Metadata"} (head_object's view; Body only when with_bodies)."""
        client = self._admin_client()
        found: dict[str, dict[str, Any]] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                key = item["Key"]
                head = client.head_object(Bucket=bucket, Key=key)
                found[key] = {
                    "ContentType": head.get("ContentType"),
                    "CacheControl": head.get("CacheControl"),
                    "ContentLength": head.get("ContentLength"),
                    "Metadata": head.get("Metadata", {}),
                }
                if with_bodies:
                    found[key]["Body"] = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return found


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh, uniquely named bucket; the recorded requests start empty."""
    if not s3_server.running:  # an earlier test stopped moto and did not start it again
        s3_server.restart()
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(name)
    s3_server.clear()
    yield name
    if s3_server.running:
        try:
            s3_server.delete_bucket(name)
        except Exception:
            pass


@pytest.fixture
def r2_env(s3_server: S3Server, s3_bucket: str) -> dict[str, str]:
    """The five HOFFDESK_R2_* variables pointing at the proxy, for child processes."""
    return {
        "HOFFDESK_R2_ENDPOINT_URL": s3_server.endpoint_url,
        "HOFFDESK_R2_BUCKET": s3_bucket,
        "HOFFDESK_R2_ACCESS_KEY_ID": s3_server.access_key,
        "HOFFDESK_R2_SECRET_ACCESS_KEY": s3_server.secret_key,
        "HOFFDESK_R2_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
    }


def reset_storages() -> None:
    """Forget django's cached storage configuration and instances (what Django's own
    ``setting_changed`` receiver does for STORAGES; ``backends`` is a cached_property)."""
    from django.core.files import storage as storage_module
    from django.utils.functional import empty

    handler: Any = storage_module.storages
    try:
        del handler.backends
    except AttributeError:
        pass
    handler._backends = None
    handler._storages = {}
    default_storage: Any = storage_module.default_storage
    default_storage._wrapped = empty


@pytest.fixture
def publish_storage_r2(settings: Any, r2_env: dict[str, str]) -> Iterator[Any]:
    """STORAGES["publish"] switched, in this process, to django-storages' S3Storage on the
    test bucket, configured exactly as settings.py configures R2; yields ``storages["publish"]``."""
    from django.core.files.storage import storages

    from hoffdesk_images.settings import s3_storage

    base_url = r2_env["HOFFDESK_R2_PUBLIC_BASE_URL"].rstrip("/") + "/"
    publish = s3_storage(r2_env, "HOFFDESK_R2_", public_base_url=base_url)
    # Assigning (not mutating) STORAGES goes through override_settings: pytest-django restores it.
    settings.STORAGES = {**settings.STORAGES, "publish": publish}
    settings.PUBLISH_BASE_URL = base_url
    settings.PUBLISH_IS_LOCAL = False
    reset_storages()
    try:
        yield storages["publish"]
    finally:
        reset_storages()


@pytest.fixture
def candidates_env(s3_server: S3Server, s3_bucket: str) -> dict[str, str]:
    """The four HOFFDESK_CANDIDATES_* variables pointing at the proxy, for the worker."""
    return {
        "HOFFDESK_CANDIDATES_ENDPOINT_URL": s3_server.endpoint_url,
        "HOFFDESK_CANDIDATES_BUCKET": s3_bucket,
        "HOFFDESK_CANDIDATES_ACCESS_KEY_ID": s3_server.access_key,
        "HOFFDESK_CANDIDATES_SECRET_ACCESS_KEY": s3_server.secret_key,
    }


@pytest.fixture
def candidates_on_s3(settings: Any, candidates_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """STORAGES["candidates"] switched, in this process, to the S3 storage settings.py makes from
    ``candidates_env``; yields ``storages["candidates"]``.

    ``Candidate.image`` is a FileField with ``storage=candidate_storage``: Django calls that once,
    when the model class is built, so the field keeps the storage of the settings at import time.
    A process started with the variables gets the S3 storage there; this one switches after
    import, so the field's storage is switched here too."""
    from django.core.files.storage import storages

    from generation.models import Candidate
    from hoffdesk_images.settings import s3_storage

    candidates = s3_storage(candidates_env, "HOFFDESK_CANDIDATES_", public_base_url=None)
    settings.STORAGES = {**settings.STORAGES, "candidates": candidates}
    reset_storages()
    storage = storages["candidates"]
    monkeypatch.setattr(Candidate._meta.get_field("image"), "storage", storage)
    try:
        yield storage
    finally:
        reset_storages()
