"""HTTP details: CORS, keep-alive, routing, body limits, organization restriction."""

from __future__ import annotations

import http.client
import json

from django_experience.emulator import EmulatorServer, EmulatorState
from tests.emulator.conftest import Api, page


def test_cors_preflight_and_headers(server: EmulatorServer, api: Api) -> None:
    response = api.session.options(
        api.base + "/profiles",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,x-force-ip"},
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "content-type,x-force-ip"
    created = api.post("/profiles", {"events": [page()]})
    assert created.headers["Access-Control-Allow-Origin"] == "*"
    assert api.get("/profiles/x").headers["Access-Control-Allow-Origin"] == "*"


def test_connections_are_kept_alive(server: EmulatorServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = json.dumps({"events": [page()]})
    for _ in range(3):
        connection.request("POST", "/v2/organizations/o/environments/main/profiles", body=body)
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        assert response.getheader("Connection") != "close"
    sock = connection.sock
    connection.request("GET", "/v2/organizations/o/environments/main/profiles/x")
    connection.getresponse().read()
    assert connection.sock is sock
    connection.close()


def test_chunked_request_bodies_are_read(server: EmulatorServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = json.dumps({"events": [page()]}).encode()
    connection.request("POST", "/v2/organizations/o/environments/main/profiles",
                       body=iter([body[:10], body[10:]]), encode_chunked=True,
                       headers={"Transfer-Encoding": "chunked"})
    assert connection.getresponse().status == 200
    connection.close()


def test_unknown_paths_and_methods(api: Api) -> None:
    assert api.session.get(api.server.url + "/v1/whatever").status_code == 404
    wrong = api.session.put(api.base + "/profiles/x", data="{}")
    assert wrong.status_code == 405
    assert wrong.json()["data"] == {} and wrong.json()["error"]["code"]
    assert api.session.get(api.base + "/events").status_code == 405


def test_bodies_over_the_limit_are_refused_with_the_envelope() -> None:
    with EmulatorServer(state=EmulatorState(max_body_bytes=1000)) as server:
        api = Api(server)
        big = {"events": [page(query="x=" + "a" * 2000)]}
        response = api.post("/profiles", big)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "ERR_INVALID_DATA"
        assert "1000" in response.json()["message"]
        assert api.post("/profiles", {"events": [page()]}).status_code == 200


def test_default_body_limit_is_one_mebibyte(api: Api) -> None:
    response = api.post("/events", b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413


def test_organization_restriction_answers_config_not_found() -> None:
    with EmulatorServer(organization="acme", environments=["main", "staging"]) as server:
        assert Api(server, org="acme").post("/profiles", {"events": [page()]}).status_code == 200
        assert Api(server, org="acme", env="staging").get("/profiles/x").status_code == 404
        for other in (Api(server, org="other"), Api(server, org="acme", env="dev")):
            response = other.post("/profiles", {"events": [page()]})
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "ERR_CONFIG_NOT_FOUND"
            assert other.get("/profiles/x").json()["error"]["code"] == "ERR_CONFIG_NOT_FOUND"


def test_restriction_through_the_control_api_is_undone_by_reset(api: Api) -> None:
    api.control("POST", "restrict", {"organization": "acme"})
    assert api.get("/profiles/x").json()["error"]["code"] == "ERR_CONFIG_NOT_FOUND"
    api.control("POST", "reset")
    assert api.get("/profiles/x").json()["error"]["code"] == "ERR_PROFILE_NOT_FOUND"


def test_wsgi_app_runs_without_a_server() -> None:
    from io import BytesIO

    from django_experience.emulator import make_app

    app = make_app(EmulatorState())
    body = json.dumps({"events": [page()]}).encode()
    captured: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"] = status

    result = app({"REQUEST_METHOD": "POST", "PATH_INFO": "/v2/organizations/o/environments/e/"
                  "profiles", "QUERY_STRING": "", "CONTENT_LENGTH": str(len(body)),
                  "wsgi.input": BytesIO(body)}, start_response)
    assert captured["status"] == "200 OK"
    assert json.loads(b"".join(result))["data"]["profile"]["id"]
