"""The API against its own OpenAPI schema. schemathesis generates requests for every operation in
``/api/schema/`` (its coverage, fuzzing and stateful phases; valid and invalid data) against a
real server over demo data in every app, authenticated with a key holding every scope. The bar:
no answer is a server error, and every answer matches the schema (status code, content type,
headers, body).

This run is bounded for CI (a few examples per operation, about two minutes); ``make fuzz`` runs
the same test longer through ``CDPHUB_FUZZ_MAX_EXAMPLES`` and ``CDPHUB_FUZZ_MAX_TIME``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cdphub.api_auth import SCOPES
from cdphub.demo.seed import demo_data_seed
from cdphub.services import api_key_create
from tests.server import current_database_url, running_server

pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]
MAX_EXAMPLES = int(os.environ.get("CDPHUB_FUZZ_MAX_EXAMPLES", "3"))
# With a time budget, fuzzing and stateful testing repeat until it is spent.
MAX_TIME = os.environ.get("CDPHUB_FUZZ_MAX_TIME")
SEED = int(os.environ.get("CDPHUB_FUZZ_SEED", "1"))


def schemathesis_run(base_url: str, key: str, report_dir: Path) -> list[str]:
    """Run schemathesis; returns one line per distinct failure (check, operation, what)."""
    st = Path(sys.executable).with_name("st")
    args = [
        str(st),
        "run",
        f"{base_url}/api/schema/?format=json",
        "--header",
        f"Authorization: Api-Key {key}",
        "--checks",
        ",".join(CHECKS),
        "--mode",
        "all",
        "--phases",
        "coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "2",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report_dir / "report.ndjson"),
        *(["--max-time", MAX_TIME] if MAX_TIME else []),
    ]
    # Run in the report directory: schemathesis keeps a cache in its working directory.
    subprocess.run(args, cwd=report_dir, capture_output=True, check=False, timeout=3600)  # noqa: S603
    return failures_in(report_dir / "report.ndjson")


def failures_in(report: Path) -> list[str]:
    failures: Counter[str] = Counter()
    with report.open() as lines:
        for line in lines:
            if not line.startswith('{"ScenarioFinished"'):
                continue
            recorder = json.loads(line)["ScenarioFinished"].get("recorder") or {}
            for checks in (recorder.get("checks") or {}).values():
                for check in checks:
                    if check["status"] == "success":
                        continue
                    failure = (check.get("failure_info") or {}).get("failure") or {}
                    message = (failure.get("message") or "").splitlines()
                    what = f"{failure.get('title', '')}: {message[0] if message else ''}"
                    failures[f"{check['name']} {failure.get('operation', '')}: {what[:200]}"] += 1
    return [f"{line} (x{count})" for line, count in sorted(failures.items())]


def test_every_operation_answers_as_its_schema_says(tmp_path):
    # Given rows in every app (profiles, events, segments, CRM, DMP, consent)
    # and an API key with every scope, PII included
    demo_data_seed(profiles=30)
    _, key = api_key_create(name="schemathesis", scopes=list(SCOPES))

    # When schemathesis exercises every operation of the schema against a real server
    with running_server(
        database_url=current_database_url(), env={"DJANGO_LOG_LEVEL": "ERROR"}
    ) as url:
        failures = schemathesis_run(url, key, tmp_path)

    # Then no answer is a server error or differs from the schema
    assert failures == [], "\n".join(failures)
