"""`fsgs-kb serve` refuses what it cannot use before any worker starts: a configuration with
mistakes (each at file:line:col, as the rules' errors are), and a missing optional extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fsgs_kb.service.config import load_config

GOOD = """\
public_base_url: https://cds.example.org
trusted_issuers:
  - iss: https://ehr.example.org
    jwks_url: https://ehr.example.org/.well-known/jwks.json
    allowed_jku: [https://ehr.example.org/.well-known/jwks.json]
allow_drafts: false
decision_log: ./fsgs-kb-decisions.sqlite
cors_origins: []
"""


def serve(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsgs_kb", "serve", "--config", str(config), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_config_mistakes_are_located(tmp_path: Path) -> None:
    config = tmp_path / "cds.yaml"
    config.write_text(GOOD.replace("allow_drafts: false", "allow_drafts: no").replace("cors_origins", "cors_origin"))
    run = serve(config)
    assert run.returncode == 2
    assert f"{config}:6:15: error[yaml.boolean]" in run.stderr
    config.write_text(GOOD.replace("cors_origins", "cors_origin"))
    run = serve(config)
    assert (
        f"{config}:8:1: error[schema.unknown_field] unknown field 'cors_origin' (hint: did you mean 'cors_origins'?)"
        in run.stderr
    )
    text = GOOD.replace("jwks_url: https://ehr", "jwks_url: http://ehr") + "mask_key_env: FSGS_KB_NOT_SET_ANYWHERE\n"
    config.write_text(text)
    run = serve(config)
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert (
        f"{config}:4:15: error[config.insecure_url] http://ehr.example.org/.well-known/jwks.json is not a secure URL"
        in lines[0]
    )
    assert f"{config}:9:15: error[config.mask_key_unset]" in lines[1]
    config.write_text(GOOD.replace("    jwks_url: https://ehr.example.org/.well-known/jwks.json\n", ""))
    run = serve(config)
    assert (
        f"{config}:3:5: error[schema.invalid]" in run.stderr and "exactly one of jwks_url and jwks_file" in run.stderr
    )


def test_paths_the_configuration_names_are_checked_where_it_names_them(tmp_path: Path) -> None:
    config = tmp_path / "cds.yaml"
    text = GOOD.replace("decision_log: ./fsgs-kb-decisions.sqlite", "decision_log: no-such-dir/x/d.sqlite")
    config.write_text(text + "rules: /nonexistent-rules\nfhir_map: nowhere.yaml\n")
    run = serve(config)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"{config}:7:15: error[config.decision_log] the decision log's directory" in run.stderr
    assert f"{config}:9:8: error[config.no_rules] rules directory /nonexistent-rules does not exist" in run.stderr
    assert f"{config}:10:11: error[config.no_fhir_map] FHIR map nowhere.yaml does not exist" in run.stderr
    (tmp_path / "empty").mkdir()
    config.write_text(GOOD + "rules: empty\n")
    assert "rules directory empty is not a knowledge base" in serve(config).stderr


def test_a_missing_extra_says_how_to_install_it(tmp_path: Path) -> None:
    config = tmp_path / "cds.yaml"
    config.write_text(GOOD)
    shadow = tmp_path / "shadow" / "starlette"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named starlette')\n")
    run = serve(config, {"PYTHONPATH": str(shadow.parent)})
    assert run.returncode == 2
    assert (
        "error[service.extra_missing] the CDS Hooks service needs the 'cds' extra (starlette not installed)"
        in run.stderr
    )
    assert "pip install 'fsgs-kb[cds]'" in run.stderr
    assert "Traceback" not in run.stderr


def test_serve_help_shows_the_exit_codes() -> None:
    run = subprocess.run([sys.executable, "-m", "fsgs_kb", "serve", "--help"], capture_output=True, text=True)
    assert "--workers" in run.stdout and "Exit codes:" in run.stdout


def test_the_shipped_example_configuration_loads() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "examples" / "cds" / "cds.yaml")
    assert config.url("/cds-services") == "https://cds.example.org/cds-services"
    assert config.allow_drafts is False and config.decision_log.name == "fsgs-kb-decisions.sqlite"
