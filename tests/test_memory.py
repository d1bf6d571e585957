"""A 10,000-goods package imports on a worker whose memory is capped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from freesport.catalog.models import Price, Product
from freesport.exchange.models import ExchangeSession
from tests.conftest import WorkerProcess
from tests.helpers import run_import
from worker.commerceml.sample import write_sample_package

GOODS = 10_000
# Data-segment cap (RLIMIT_DATA) for the capped worker. The streaming worker peaks
# near 110 MB here; a DOM parse of the package's goods and prices files needs
# about 300 MB, so the cap sits well below it.
MEMORY_CAP_BYTES = 160 * 1024 * 1024

DOM_PARSE = """
import resource, sys
from lxml import etree
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
trees = [etree.parse(path) for path in sys.argv[2:]]
print("parsed", len(trees))
"""


def test_10k_goods_on_memory_capped_worker(
    tmp_path: Path,
    celery_worker_process: WorkerProcess,
    transactional_db: None,
    worker_logs: Path,
) -> None:
    package = tmp_path / "package"
    summary = write_sample_package(package, GOODS, goods_per_file=GOODS)
    goods_file = next(package.glob("goods_*.xml"))
    prices_file = next(package.glob("prices_*.xml"))
    dom = subprocess.run(
        [
            sys.executable,
            "-c",
            DOM_PARSE,
            str(MEMORY_CAP_BYTES),
            str(goods_file),
            str(prices_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode != 0, (
        "a DOM parse fits under the cap, so the cap proves nothing"
    )
    assert "parsed" not in dom.stdout
    capped = WorkerProcess(
        "capped",
        worker_logs / "capped-worker.log",
        pool="solo",
        memory_limit_bytes=MEMORY_CAP_BYTES,
    )
    try:
        capped.wait_ready()

        session = run_import([package], queue="capped", timeout=600)
    finally:
        capped.stop()

    assert session.status == ExchangeSession.Status.SUCCEEDED, session.error
    assert Product.objects.count() == GOODS
    assert Price.objects.count() == summary.prices
