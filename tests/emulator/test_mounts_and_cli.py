"""Mounted services, the command line and the management command."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import CommandError, call_command

from django_experience.emulator import EmulatorServer, Mount
from django_experience.emulator.mounts import WSGIApp, normalize_prefix


class RecordingApp:
    """A tiny WSGI app standing in for a mounted destination emulator."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.resets = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.seen.append((environ["SCRIPT_NAME"], environ["PATH_INFO"]))
        body = json.dumps({"path": environ["PATH_INFO"]}).encode()
        start_response("202 Accepted", [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(body)))])
        return [body]

    def reset(self) -> None:
        self.resets += 1
        self.seen.clear()

    def snapshot(self) -> dict[str, Any]:
        return {"requests": len(self.seen)}


def test_mounts_get_their_prefix_reset_and_snapshot() -> None:
    experiture = RecordingApp()
    releva = RecordingApp()
    mounts: dict[str, WSGIApp | Mount] = {
        "/experiture/": experiture, "releva": Mount("/releva/", releva, releva.reset)}
    with EmulatorServer(mounts=mounts) as server:
        response = requests.post(server.url + "/experiture/public/v1/profiles/upsert", json={},
                                 timeout=5)
        assert response.status_code == 202
        assert experiture.seen == [("/experiture", "/public/v1/profiles/upsert")]
        requests.post(server.url + "/releva/api/v0/profiles", json={}, timeout=5)
        assert releva.seen == [("/releva", "/api/v0/profiles")]
        destinations = requests.get(server.url + "/__emulator__/destinations", timeout=5).json()
        assert destinations["data"] == {"experiture": {"requests": 1}}
        requests.post(server.url + "/__emulator__/reset", timeout=5)
        assert (experiture.resets, releva.resets) == (1, 1)
        # Mount traffic is not Experience API traffic.
        assert server.state.stats.requests() == {}


def test_a_bound_emulator_queues_connections_until_it_serves() -> None:
    # The command line prints its URL between bind() and serving: the URL must already be
    # live (the connection is accepted), and nothing may be answered before the banner.
    server = EmulatorServer().bind()
    try:
        assert server.port != 0
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(b"GET /__emulator__/config HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\n\r\n")
            sock.settimeout(0.2)
            with pytest.raises(TimeoutError):
                sock.recv(1)
            server.start()
            sock.settimeout(5)
            assert sock.recv(12) == b"HTTP/1.1 200"
    finally:
        server.stop()
    assert not server.running


def test_a_bound_emulator_stops_without_serving() -> None:
    server = EmulatorServer().bind()
    server.stop()  # must not wait for a serving loop that never ran
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=5).close()


def test_mount_prefixes_cannot_hide_the_api() -> None:
    for prefix in ("/", "/v2/", "/__emulator__/x"):
        with pytest.raises(ValueError):
            normalize_prefix(prefix)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, process: subprocess.Popen[str]) -> requests.Response:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited early: {process.communicate()}")
        try:
            return requests.get(url, timeout=1)
        except requests.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("the emulator did not start")


def _run(command: list[str], url: str, env: dict[str, str] | None = None) -> tuple[
        requests.Response, str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        response = _wait_for(url, process)
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    return response, out


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "emulator.json"
    path.write_text(json.dumps({"experiences": [{"id": "e", "components": []}]}))
    return path


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def test_python_dash_m_runs_without_django_settings(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "django_experience.emulator", "--port", str(port),
               "--config", str(_config_file(tmp_path)), "--organization", "acme",
               "--environment", "main", "staging"]
    response, out = _run(command, base + "/v2/organizations/other/environments/main/profiles/x",
                         env=_clean_env())
    assert response.json()["error"]["code"] == "ERR_CONFIG_NOT_FOUND"
    assert f"http://127.0.0.1:{port}" in out and "1 experiences" in out


def test_cli_refuses_a_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"experiences": [{"id": ""}]}')
    result = subprocess.run([sys.executable, "-m", "django_experience.emulator", "--port", "0",
                             "--config", str(bad)], capture_output=True, text=True, timeout=30,
                            env=_clean_env())
    assert result.returncode == 2
    assert "experiences[0].id" in result.stderr


def test_management_command_runs_the_emulator(tmp_path: Path) -> None:
    port = _free_port()
    env = _clean_env()
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    command = [sys.executable, "-m", "django", "experience_emulator", "--port", str(port),
               "--config", str(_config_file(tmp_path))]
    response, out = _run(command, f"http://127.0.0.1:{port}/__emulator__/config", env=env)
    assert response.json()["data"]["experiences"][0]["id"] == "e"
    assert "Experience API emulator on" in out


def test_management_command_reports_why_it_could_not_start_on_its_stderr(
    tmp_path: Path,
) -> None:
    """``call_command(..., stderr=...)`` captures the reason, as with any Django command."""
    bad = tmp_path / "experiences.json"
    bad.write_text('{"experiences": "not a list"}', encoding="utf-8")
    errors = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("experience_emulator", config=str(bad), stderr=errors)
    assert raised.value.returncode == 2
    assert "experiences" in errors.getvalue()


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_cli_refuses_a_port_no_socket_can_have(port: str) -> None:
    # 70000 reached bind(), whose OverflowError ended the CLI with a traceback.
    result = subprocess.run([sys.executable, "-m", "django_experience.emulator", "--port", port],
                            capture_output=True, text=True, timeout=30, env=_clean_env())
    assert result.returncode == 2
    assert f"argument --port: must be a port number, 0 to 65535, not {port!r}" in result.stderr
    assert "Traceback" not in result.stderr
