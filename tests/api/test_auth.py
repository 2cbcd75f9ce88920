"""Bearer tokens: only hashes are stored, revoked or unknown tokens answer 401 in JSON, a user
who may not act gets 403, and ``create_api_token`` prints a working token as its last line."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from api.models import ApiToken
from tests.api.conftest import ApiClient, api_user, assert_error

pytestmark = pytest.mark.django_db

URL = "/api/v1/articles/anything"


def test_a_valid_token_reaches_the_api_and_records_its_use(api, token) -> None:
    assert api.get(URL).status_code == 404  # authenticated: the article simply does not exist
    row = ApiToken.objects.get()
    assert row.last_used_at is not None
    assert token.startswith(row.prefix) and len(row.prefix) == 8


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Token abc", "Basic dXNlcjpwYXNz", "Bearer not-a-token"],
    ids=["absent", "empty", "no-token", "blank-token", "other-scheme", "basic", "unknown"],
)
def test_a_missing_or_wrong_token_answers_401_in_json(client, token, header) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = client.get(URL, headers=headers)
    assert_error(response, 401, "Authorization")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_401_comes_before_looking_at_the_body(client, db) -> None:
    response = client.post("/api/v1/articles", "{not json", content_type="application/json")
    assert_error(response, 401, "Authorization")


def test_a_revoked_token_answers_401(api, token) -> None:
    assert ApiToken.objects.get().revoke()
    body = assert_error(api.get(URL), 401, "Authorization")
    assert "revoked" in body["detail"]


def test_a_user_who_may_not_act_gets_403(db) -> None:
    _row, value = ApiToken.issue(user=api_user("onlooker"))
    assert_error(ApiClient(value).get(URL), 403, "Authorization")


def test_an_admin_and_a_superuser_may_use_the_api(db) -> None:
    _row, admin_token = ApiToken.issue(user=api_user("boss", "admins"))
    root = get_user_model().objects.create_superuser("root", password="root-pass-123")
    _row, root_token = ApiToken.issue(user=root)
    assert ApiClient(admin_token).get(URL).status_code == 404
    assert ApiClient(root_token).get(URL).status_code == 404


def test_a_disabled_account_answers_401(db) -> None:
    user = api_user("gone", "editors")
    _row, value = ApiToken.issue(user=user)
    user.is_active = False
    user.save()
    assert_error(ApiClient(value).get(URL), 401, "Authorization")


def test_the_database_holds_no_token_in_clear(token) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")
        rows = cursor.fetchall()
    assert rows
    for row in rows:
        assert not any(token in str(value) for value in row), row


def test_create_api_token_prints_a_working_token_last_and_makes_the_user_an_editor(db) -> None:
    out = StringIO()
    call_command("create_api_token", "content-bot", stdout=out)
    value = out.getvalue().strip().splitlines()[-1]
    user = get_user_model().objects.get(username="content-bot")
    assert list(user.groups.values_list("name", flat=True)) == ["editors"]
    assert not user.has_usable_password()
    response = ApiClient(value).post("/api/v1/articles", {"slug": "from-cli", "title": "From the CLI"})
    assert response.status_code == 201, response.content
    assert ApiToken.objects.get(user=user).prefix == value[:8]


def test_create_api_token_for_an_existing_user_keeps_their_groups_and_adds_a_second_token(db) -> None:
    user = api_user("boss", "admins")
    outputs = []
    for _ in range(2):
        out = StringIO()
        call_command("create_api_token", "boss", "--name", "laptop", stdout=out)
        outputs.append(out.getvalue().strip().splitlines()[-1])
    assert outputs[0] != outputs[1]
    assert list(user.groups.values_list("name", flat=True)) == ["admins"]
    assert ApiToken.objects.filter(user=user, name="laptop").count() == 2
    assert all(ApiClient(value).get(URL).status_code == 404 for value in outputs)


def test_revoking_in_the_admin_turns_the_token_away(admin_client, api, token) -> None:
    row = ApiToken.objects.get()
    listing = admin_client.get("/admin/api/apitoken/")
    assert listing.status_code == 200
    assert row.prefix.encode() in listing.content and token.encode() not in listing.content
    response = admin_client.post(
        "/admin/api/apitoken/", {"action": "revoke", "_selected_action": [row.pk]}, follow=True
    )
    assert response.status_code == 200
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert_error(api.get(URL), 401, "Authorization")


def test_every_operation_in_the_schema_answers_401_without_a_token(client) -> None:
    """Walks the schema, so a new operation that forgets the token fails here (the URL walk of
    tests/gallery/test_access.py leaves the api namespace to this module)."""
    schema = client.get("/api/v1/openapi.json").json()
    for path, operations in schema["paths"].items():
        url = path.replace("{slug}", "some-slug").replace("{pk}", "1")
        for method, operation in operations.items():
            assert operation["security"] == [{"BearerToken": []}], (method, path)
            response = getattr(client, method)(url, content_type="application/json")
            assert_error(response, 401, "Authorization")
