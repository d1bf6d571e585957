"""The management commands an operator runs: onec_import, onec_status, onec_sample."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from config.embedded_redis import EmbeddedRedis
from freesport.catalog.models import Product
from tests.conftest import PROJECT_DIR
from tests.helpers import catalog, classifier, product, write_xml


def _run_import(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with pytest.raises(SystemExit) as caught:
        call_command("onec_import", *args, stdout=out, stderr=io.StringIO())
    return int(caught.value.code or 0), out.getvalue()


def test_onec_import_exit_0_and_summary(tmp_path: Path, worker: object) -> None:
    write_xml(
        tmp_path / "import.xml", classifier() + catalog(product("A") + product("B"))
    )

    code, output = _run_import(str(tmp_path))

    assert code == 0
    assert "succeeded" in output
    assert "products" in output
    assert Product.objects.count() == 2


def test_onec_import_json_exit_2_when_skipped(tmp_path: Path, worker: object) -> None:
    goods = product("A", extra="<Картинка>import_files/none.jpg</Картинка>")
    write_xml(tmp_path / "import.xml", classifier() + catalog(goods))

    code, output = _run_import(str(tmp_path), "--json")

    summary = json.loads(output)
    assert code == 2
    assert summary["status"] == "partial"
    assert summary["counts"]["products"]["created"] == 1
    assert summary["problems"] == 1


def test_onec_import_exit_1_on_broken_file(tmp_path: Path, worker: object) -> None:
    (tmp_path / "import.xml").write_text(
        "<КоммерческаяИнформация><Каталог>", encoding="utf-8"
    )

    code, output = _run_import(str(tmp_path), "--json")

    assert code == 1
    assert json.loads(output)["files"][0]["status"] == "failed"


def test_onec_import_says_when_no_worker(tmp_path: Path) -> None:
    # A Redis server with no worker on it: the command must say how to start one.
    server = EmbeddedRedis(tmp_path / "redis")
    server.ensure_running()
    write_xml(tmp_path / "pkg" / "import.xml", catalog(product("A")))
    env = dict(
        os.environ, REDIS_URL=server.url, DJANGO_SETTINGS_MODULE="config.settings_test"
    )
    try:
        result = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "onec_import",
                str(tmp_path / "pkg"),
                "--ping-timeout",
                "1",
            ],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop()

    assert result.returncode == 1
    assert "No Celery worker responded" in result.stderr
    assert "celery -A worker.app worker" in result.stderr


def test_onec_status_json(worker: object) -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit) as caught:
        call_command("onec_status", "--json", stdout=out)

    report = json.loads(out.getvalue())
    assert caught.value.code == 0
    assert report["redis"]["ok"] is True
    assert report["database"]["ok"] is True
    assert any(name.startswith("celery-") for name in report["workers"])
    assert report["sessions"] == []


def test_onec_sample_writes_package(tmp_path: Path) -> None:
    out = io.StringIO()

    call_command(
        "onec_sample", str(tmp_path / "pkg"), "--goods", "25", "--json", stdout=out
    )

    counts = json.loads(out.getvalue())
    assert counts["goods"] == 25
    assert list((tmp_path / "pkg").glob("goods_*.xml"))
