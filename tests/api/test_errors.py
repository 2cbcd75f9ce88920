"""Under /api/ every answer is JSON: unknown paths, malformed ids and wrong methods included;
the schema and the docs page are served (the docs' scripts from this server, not a CDN)."""

from __future__ import annotations

import pytest

from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/api/",
        "/api/v1/",
        "/api/v1/articles/1/nothing/deeper",
        "/api/v2/articles",
        "/api/v1/nothing-here",
        "/api/v1/articles/",
        "/api/v1/runs/abc",
        "/api/v1/runs/-1",
        "/api/v1/runs/1.5",
        "/api/v1/candidates/x/image",
        "/api/v1/candidates/1/nope",
    ],
)
def test_unknown_paths_and_malformed_ids_answer_json_404(api, path) -> None:
    assert_error(api.get(path), 404, "path")


def test_unknown_paths_answer_json_404_even_without_a_token(client) -> None:
    assert_error(client.get("/api/v1/nothing-here"), 404, "path")


@pytest.mark.parametrize("method", ["get", "post", "put", "delete"])
def test_the_v1_root_itself_answers_json_with_or_without_a_token(api, client, method) -> None:
    for caller in (client, api.client):
        body = assert_error(getattr(caller, method)("/api/v1/", headers=api._headers()), 404, "path")
        assert "/api/v1/docs" in body["detail"]
    assert_error(getattr(client, method)("/api/v1/"), 404, "path")


def test_a_post_to_a_malformed_id_is_a_json_404_not_a_csrf_page(api) -> None:
    api.client = type(api.client)(enforce_csrf_checks=True)
    assert_error(api.post("/api/v1/runs/null,null/cancel"), 404, "path")
    assert_error(api.post("/api/v1/candidates/x/publish", {"alt_text": "A"}), 404, "path")


@pytest.mark.parametrize("pk", [0, 99999, 2**63, 10**30])
def test_ids_that_match_nothing_answer_json_404_naming_the_id(api, pk) -> None:
    for path in (f"/api/v1/runs/{pk}", f"/api/v1/candidates/{pk}", f"/api/v1/candidates/{pk}/image"):
        assert_error(api.get(path), 404, "id")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("get", "/api/v1/articles", "POST"),
        ("delete", "/api/v1/articles/some-slug", "GET"),
        ("get", "/api/v1/runs/1/cancel", "POST"),
        ("put", "/api/v1/candidates/1/approve", "POST"),
    ],
)
def test_a_wrong_method_answers_json_405_with_allow(api, method, path, allowed) -> None:
    response = getattr(api.client, method)(path, headers={"Authorization": f"Bearer {api.token}"})
    assert_error(response, 405, "method")
    assert response["Allow"] == allowed


def test_the_openapi_schema_describes_every_endpoint_and_bearer_auth(client) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    assert set(schema["paths"]) == {
        "/api/v1/articles",
        "/api/v1/articles/{slug}",
        "/api/v1/articles/{slug}/runs",
        "/api/v1/runs/{pk}",
        "/api/v1/runs/{pk}/cancel",
        "/api/v1/runs/{pk}/regenerate",
        "/api/v1/candidates/{pk}",
        "/api/v1/candidates/{pk}/image",
        "/api/v1/candidates/{pk}/approve",
        "/api/v1/candidates/{pk}/reject",
        "/api/v1/candidates/{pk}/publish",
    }
    assert schema["components"]["securitySchemes"]["BearerToken"] == {"type": "http", "scheme": "bearer"}
    for operations in schema["paths"].values():
        for operation in operations.values():
            assert {"401", "403"} <= set(operation["responses"])


def test_the_docs_page_loads_swagger_from_this_server(client) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn" not in html.lower() and "/api/v1/openapi.json" in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/api/v1/docs/assets/{asset}" in html
        assert client.get(f"/api/v1/docs/assets/{asset}").status_code == 200
    assert_error(client.get("/api/v1/docs/assets/..%2Fsettings.py"), 404, "path")
