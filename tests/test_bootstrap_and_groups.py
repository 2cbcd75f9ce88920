"""The editors/admins groups from the data migration, the bootstrap command's password handling,
and the friendly 403 and 404 pages."""

from __future__ import annotations

import io
import stat

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.http import Http404
from django.test import RequestFactory
from django.views.defaults import page_not_found, permission_denied

pytestmark = pytest.mark.django_db


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def data_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    return settings.DATA_DIR


@pytest.fixture
def no_env_password(monkeypatch):
    monkeypatch.delenv("HOFFDESK_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("HOFFDESK_ADMIN_USER", raising=False)


def group_codenames(name: str) -> set[str]:
    return set(Group.objects.get(name=name).permissions.values_list("codename", flat=True))


def test_migration_creates_editors_and_admins_groups() -> None:
    assert set(Group.objects.filter(name__in=["editors", "admins"]).values_list("name", flat=True)) == {
        "editors",
        "admins",
    }
    admins = group_codenames("admins")
    for model in ("stylepreset", "prompttemplate"):
        for action in ("add", "change", "delete", "view"):
            assert f"{action}_{model}" in admins
    editors = group_codenames("editors")
    assert "change_stylepreset" not in editors
    assert "change_prompttemplate" not in editors


def test_bootstrap_without_tty_writes_password_to_private_file(data_dir, no_env_password, django_user_model) -> None:
    out = io.StringIO()
    call_command("bootstrap", stdout=out)

    path = data_dir / "admin-password.txt"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text(encoding="utf-8").strip()
    assert len(password) >= 12
    output = out.getvalue()
    assert password not in output
    assert str(path.resolve()) in output
    assert "admin" in output

    user = authenticate(RequestFactory().post("/login/"), username="admin", password=password)
    assert user is not None
    assert user.is_superuser
    assert user.groups.filter(name="admins").exists()
    assert django_user_model.objects.count() == 1


def test_bootstrap_replaces_a_loose_old_password_file_with_a_private_one(data_dir, no_env_password) -> None:
    data_dir.mkdir(parents=True)
    path = data_dir / "admin-password.txt"
    path.write_text("stale\n")
    path.chmod(0o644)
    call_command("bootstrap", stdout=io.StringIO())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() != "stale"


def test_bootstrap_on_a_tty_prints_the_password_and_writes_no_file(data_dir, no_env_password) -> None:
    out = FakeTTY()
    call_command("bootstrap", stdout=out)

    assert not (data_dir / "admin-password.txt").exists()
    output = out.getvalue()
    assert "with password: " in output
    password = output.split("with password: ", 1)[1].split()[0]
    # A terminal gets coloured output; strip a trailing ANSI reset if the style added one.
    password = password.split("\x1b")[0]
    user = authenticate(RequestFactory().post("/login/"), username="admin", password=password)
    assert user is not None
    assert user.groups.filter(name="admins").exists()


def test_bootstrap_with_env_password_keeps_it_out_of_output_and_files(data_dir, monkeypatch) -> None:
    monkeypatch.setenv("HOFFDESK_ADMIN_PASSWORD", "from-the-env-123")
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    assert "from-the-env-123" not in out.getvalue()
    assert "HOFFDESK_ADMIN_PASSWORD" in out.getvalue()
    assert not (data_dir / "admin-password.txt").exists()
    assert authenticate(RequestFactory().post("/login/"), username="admin", password="from-the-env-123") is not None


def test_bootstrap_does_nothing_when_a_user_exists(data_dir, no_env_password, django_user_model) -> None:
    django_user_model.objects.create_user(username="someone", password="someone-pass-123")
    out = FakeTTY()
    call_command("bootstrap", stdout=out)
    assert out.getvalue() == ""
    assert not (data_dir / "admin-password.txt").exists()
    assert list(django_user_model.objects.values_list("username", flat=True)) == ["someone"]


def test_403_page_is_friendly(django_user_model) -> None:
    request = RequestFactory().get("/articles/x/generate/")
    request.user = django_user_model.objects.create_user(username="viewer", password="viewer-pass-123")

    response = permission_denied(request, PermissionDenied("no"))

    assert response.status_code == 403
    html = response.content.decode()
    assert "Not allowed" in html
    assert "can look around, but it can't act" in html
    assert "Editors and admins are groups" in html
    assert 'href="/"' in html
    assert "Traceback" not in html
    assert "Log out viewer" in html  # the base template saw the user


def test_404_page_is_friendly() -> None:
    request = RequestFactory().get("/nowhere/")
    response = page_not_found(request, Http404("gone"))
    assert response.status_code == 404
    html = response.content.decode()
    assert "Not found" in html
    assert 'href="/"' in html
    assert "Traceback" not in html
