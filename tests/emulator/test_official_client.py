"""Wire compatibility with the official JS client, run with node.

Skipped when node or ``@ninetailed/experience.js-shared`` is missing, unless
``EXPERIENCE_REQUIRE_NODE=1`` (CI), where a missing tool fails the run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from django_experience.emulator import EmulatorServer
from tests.emulator.conftest import Api, identify, page, track

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "tests" / "js"
PACKAGE = ROOT / "node_modules" / "@ninetailed" / "experience.js-shared" / "package.json"

pytestmark = pytest.mark.node


def _node() -> str:
    node = shutil.which("node")
    problem = None
    if node is None:
        problem = "node is not installed"
    elif not PACKAGE.exists():
        problem = "@ninetailed/experience.js-shared is not installed (npm install)"
    if problem is not None:
        if os.environ.get("EXPERIENCE_REQUIRE_NODE") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    assert node is not None
    return node


def _run(script: str, *args: str, stdin: str | None = None) -> Any:
    result = subprocess.run([_node(), str(JS / script), *args], input=stdin,
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


CONFIG: dict[str, Any] = {
    "audiences": [{"id": "gold", "rules": {"trait": "tier", "equals": "gold"}}],
    "experiences": [{
        "id": "exp-hero", "type": "nt_personalization", "audience": {"id": "gold"},
        "distribution": [{"index": 0, "start": 0, "end": 0}, {"index": 1, "start": 0, "end": 1}],
        "components": [
            {"type": "EntryReplacement", "baseline": {"id": "hero"},
             "variants": [{"id": "hero-gold", "hidden": False}]},
            {"type": "InlineVariable", "key": "cta", "baseline": {"value": "Buy"},
             "variants": [{"value": {"label": "Get it", "color": "orange"}}]}]}],
}


def test_official_client_accepts_every_answer(server: EmulatorServer) -> None:
    server.state.configure(CONFIG)
    out = _run("wire_check.js", server.url, "wire-org")
    created = out["created"]["profile"]
    assert created["location"]["countryCode"] == "DE"
    assert created["session"]["landingPage"]["query"] == {"utm_campaign": "spring"}
    updated = out["updated"]
    assert updated["profile"]["traits"] == {"tier": "gold"}
    assert updated["profile"]["audiences"] == ["gold"]
    assert updated["experiences"] == [{"experienceId": "exp-hero", "variantIndex": 1,
                                       "variants": {"hero": "hero-gold"}, "sticky": False}]
    assert updated["changes"][0]["value"] == {"label": "Get it", "color": "orange"}
    assert out["fetched"]["profile"]["id"] == created["id"]
    assert out["sticky"]["experiences"][0]["sticky"] is True
    assert out["preflight"]["profile"]["id"] not in {p["id"] for p in
                                                     server.state.profiles_json()}
    assert sorted(p["id"] for p in out["many"]) == ["batch-0", "batch-1", "batch-2"]
    assert "404" in out["missing"]
    stored = server.state.profile_json(created["id"])
    assert stored is not None
    assert [e["type"] for e in stored["events"]] == ["page", "identify", "track", "component"]
    requests = server.state.stats.requests()
    assert requests["create"] == {"200": 2} and requests["update"] == {"200": 2}
    assert requests["get"] == {"200": 1, "404": 1} and requests["batch"] == {"200": 1}


def test_selection_matches_the_official_sdk_for_many_profiles(server: EmulatorServer,
                                                              api: Api) -> None:
    rng = random.Random(1234)
    config: dict[str, Any] = {
        "audiences": [
            {"id": "gold", "rules": {"trait": "tier", "equals": "gold"}},
            {"id": "buyers", "rules": {"event": "bought"}},
        ],
        "experiences": [
            {"id": "exp-a", "type": "nt_experiment", "trafficAllocation": 0.7,
             "distribution": [{"index": 0, "start": 0, "end": 0.25},
                              {"index": 1, "start": 0.25, "end": 0.6},
                              {"index": 2, "start": 0.6, "end": 1}],
             "components": [{"type": "EntryReplacement", "baseline": {"id": "a"},
                             "variants": [{"id": "a1"}, {"id": "a2", "hidden": True}]}]},
            {"id": "exp-gold", "type": "nt_personalization", "audience": {"id": "gold"},
             "trafficAllocation": 0.9,
             "distribution": [{"index": 0, "start": 0, "end": 0.5},
                              {"index": 1, "start": 0.5, "end": 1}],
             "components": [{"type": "EntryReplacement", "baseline": {"id": "g"},
                             "variants": [{"id": "g1"}]}]},
            {"id": "exp-buyers", "audience": {"id": "buyers"}, "trafficAllocation": 1,
             "distribution": [{"index": 1, "start": 0.1, "end": 0.4}],
             "components": [{"type": "EntryReplacement", "baseline": {"id": "b"},
                             "variants": [{"id": "b1"}]}]},
        ],
    }
    server.state.configure(config)
    answers = []
    for n in range(300):
        events: list[dict[str, Any]] = [page("/")]
        if rng.random() < 0.5:
            events.append(identify(f"user-{n}", tier="gold"))
        if rng.random() < 0.4:
            events.append(track("bought"))
        profile_id = f"{rng.getrandbits(64):016x}-{n}" if n % 3 else None
        data = api.update(profile_id, *events) if profile_id else api.create(*events)
        answers.append(data)
    profiles = [{"stableId": a["profile"]["stableId"], "audiences": a["profile"]["audiences"]}
                for a in answers]
    expected = _run("select.js", stdin=json.dumps({"experiences": config["experiences"],
                                                   "profiles": profiles}))
    matched = 0
    for answer, per_experience in zip(answers, expected, strict=True):
        chosen = {e["experienceId"]: e for e in answer["experiences"]}
        for experience, sdk in zip(config["experiences"], per_experience, strict=True):
            ours = chosen.get(experience["id"])
            assert (ours is not None) == sdk["match"], (answer["profile"]["id"], experience["id"])
            if ours is not None:
                matched += 1
                assert ours["variantIndex"] == sdk["index"]
                assert ours["variants"] == sdk["variants"]
    assert matched > 300  # the comparison covered plenty of selections
