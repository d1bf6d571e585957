"""The 1C site-exchange endpoint, driven over HTTP by the 1C emulator."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.contrib.auth.models import Permission, User

from freesport.catalog.models import Group, Offer, Price, Product, Stock
from freesport.exchange.models import ExchangeFile, ExchangeSession, ImportProblem
from onec_emulator import ExchangeClient, ExchangeResult
from tests.conftest import WorkerProcess
from tests.helpers import (
    catalog,
    classifier,
    offer,
    offers_package,
    product,
    run_import,
    write_xml,
)
from tests.test_samples import SETS, expected_counts
from worker.commerceml.sample import write_sample_package

USER = "onec"
PASSWORD = "exchange-secret-1"
WAREHOUSE = (
    "<Склады><Склад><Ид>main</Ид><Наименование>Главный</Наименование></Склад></Склады>"
)


@pytest.fixture
def exchange_url(live_server: Any, worker: WorkerProcess, settings: Any) -> str:
    """The endpoint on a real HTTP server, with a 1C user and a running worker."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter("freesport:exchange:login-failures:*"):
        client.delete(key)
    client.close()
    user = User.objects.create_user(USER, password=PASSWORD)
    user.user_permissions.add(Permission.objects.get(codename="exchange_with_1c"))
    settings.EXCHANGE_FILE_LIMIT = 1024
    return f"{live_server.url}/exchange/1c/"


def _client(url: str, **options: Any) -> ExchangeClient:
    options.setdefault("poll_interval", 0.05)
    return ExchangeClient(url, USER, PASSWORD, **options)


def _session(result: ExchangeResult) -> ExchangeSession:
    return ExchangeSession.objects.get(sessid=result.sessid)


def _get(url: str, **params: str) -> list[str]:
    response = requests.get(url, params={"type": "catalog", **params}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text.splitlines()


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize(("use_zip", "use_cookies"), [(True, True), (False, False)])
def test_sample_set_exchange(
    name: str, use_zip: bool, use_cookies: bool, samples_dir: Path, exchange_url: str
) -> None:
    folder = samples_dir / name
    expected = expected_counts(folder)
    client = _client(exchange_url, use_zip=use_zip, use_cookies=use_cookies)

    result = client.push(folder, complete=True)

    assert result.ok, result.reason
    uploads = [step for step in result.transcript if step.mode == "file"]
    assert max(step.bytes_sent for step in uploads) <= 1024
    assert len(uploads) > 1
    session = _session(result)
    assert session.status in (
        ExchangeSession.Status.SUCCEEDED,
        ExchangeSession.Status.PARTIAL,
    )
    assert session.completed_at is not None
    assert Group.objects.count() == len(expected.groups)
    assert Product.objects.count() == len(expected.products)
    assert set(Offer.objects.values_list("external_id", flat=True)) == expected.offers
    assert Price.objects.count() == len(expected.prices)
    assert Stock.objects.count() == len(expected.stock)
    assert session.steps.filter(mode="file").count() == len(uploads)


@pytest.mark.parametrize(("use_zip", "use_cookies"), [(True, False), (False, True)])
def test_exchange_other_zip_cookie_pairs(
    use_zip: bool, use_cookies: bool, samples_dir: Path, exchange_url: str
) -> None:
    folder = samples_dir / "official-1c-2.04"

    result = _client(exchange_url, use_zip=use_zip, use_cookies=use_cookies).push(
        folder
    )

    assert result.ok, result.reason
    assert Product.objects.count() == len(expected_counts(folder).products)


def test_import_of_file_never_uploaded(exchange_url: str) -> None:
    client = _client(exchange_url)
    client.checkauth()
    client.init()

    answer = _get(
        exchange_url, mode="import", filename="import.xml", sessid=client.sessid or ""
    )

    assert answer[0] == "failure"
    assert "file not found" in answer[1]


def test_exception_inside_view_answers_failure(
    exchange_url: str, settings: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    settings.EXCHANGE_ROOT = blocker

    response = requests.get(
        exchange_url,
        params={"type": "catalog", "mode": "checkauth"},
        auth=(USER, PASSWORD),
        timeout=10,
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text.splitlines()[0] == "failure"
    assert "internal error" in response.text
    assert "Traceback" not in response.text


def test_checkauth_without_credentials(exchange_url: str) -> None:
    answer = _get(exchange_url, mode="checkauth")

    assert answer[0] == "failure"
    assert "no credentials received" in answer[1]


def test_failed_logins_are_throttled(exchange_url: str) -> None:
    for _ in range(5):
        response = requests.get(
            exchange_url,
            params={"type": "catalog", "mode": "checkauth"},
            auth=(USER, "wrong"),
            timeout=10,
        )
        assert response.text.startswith("failure\ninvalid user name or password")

    blocked = requests.get(
        exchange_url,
        params={"type": "catalog", "mode": "checkauth"},
        auth=(USER, PASSWORD),
        timeout=10,
    )

    assert blocked.text.startswith("failure\ntoo many failed logins")


def test_user_without_permission_refused(exchange_url: str) -> None:
    User.objects.create_user("shopper", password="shopper-pass-1")

    response = requests.get(
        exchange_url,
        params={"type": "catalog", "mode": "checkauth"},
        auth=("shopper", "shopper-pass-1"),
        timeout=10,
    )

    assert response.text.startswith("failure\n")
    assert not ExchangeSession.objects.exists()


def test_requests_without_session_refused(exchange_url: str) -> None:
    for sessid in ("", "0" * 48):
        answer = _get(exchange_url, mode="init", sessid=sessid)
        assert answer[0] == "failure"
        assert "start with mode=checkauth" in answer[1]


@pytest.mark.parametrize(
    "name",
    [
        "../escape.xml",
        "/etc/escape.xml",
        "a/../../escape.xml",
        "C:/escape.xml",
        "a\\escape.xml",
        "a\x00.xml",
        "",
    ],
)
def test_upload_names_cannot_escape(
    name: str, exchange_url: str, tmp_path: Path
) -> None:
    client = _client(exchange_url)
    client.checkauth()

    response = requests.post(
        exchange_url,
        params={
            "type": "catalog",
            "mode": "file",
            "filename": name,
            "sessid": client.sessid or "",
        },
        data=b"<x/>",
        timeout=10,
    )

    assert response.text.startswith("failure\n")
    session = ExchangeSession.objects.get(sessid=client.sessid)
    assert list(Path(session.upload_dir).rglob("*")) == []


def test_upload_size_limit_per_file(exchange_url: str, settings: Any) -> None:
    settings.EXCHANGE_MAX_FILE_BYTES = 1500
    client = _client(exchange_url, use_zip=False)
    client.checkauth()
    client.init()
    client.upload("import.xml", b"x" * 1000)

    answer = requests.post(
        exchange_url,
        params={
            "type": "catalog",
            "mode": "file",
            "filename": "import.xml",
            "sessid": client.sessid or "",
        },
        data=b"x" * 1000,
        timeout=10,
    ).text.splitlines()

    assert answer[0] == "failure"
    assert "EXCHANGE_MAX_FILE_BYTES" in answer[1]
    session = ExchangeSession.objects.get(sessid=client.sessid)
    assert not (Path(session.upload_dir) / "import.xml").exists()


def test_chunks_append_and_new_session_starts_empty(exchange_url: str) -> None:
    first = _client(exchange_url, use_zip=False)
    first.checkauth()
    first.init()
    first.upload("import.xml", b"a" * 2500)
    second = _client(exchange_url, use_zip=False)
    second.checkauth()
    second.init()
    second.upload("import.xml", b"b" * 10)

    one = ExchangeSession.objects.get(sessid=first.sessid)
    two = ExchangeSession.objects.get(sessid=second.sessid)
    assert (Path(one.upload_dir) / "import.xml").read_bytes() == b"a" * 2500
    assert (Path(two.upload_dir) / "import.xml").read_bytes() == b"b" * 10
    assert one.steps.filter(mode="file").count() == 3
    assert one.bytes_received == 2500


def test_concurrent_exchanges_keep_their_rests(
    tmp_path: Path, exchange_url: str
) -> None:
    goods = "".join(product(f"P{n}") for n in range(4))
    write_xml(tmp_path / "base" / "import.xml", classifier() + catalog(goods))
    write_xml(tmp_path / "base" / "storages.xml", classifier(extra=WAREHOUSE))
    assert run_import([tmp_path / "base"]).status == ExchangeSession.Status.SUCCEEDED
    rest = "<Остатки><Остаток><Склад><Ид>main</Ид><Количество>{n}</Количество></Склад></Остаток></Остатки>"
    for side, numbers in (("a", (0, 1)), ("b", (2, 3))):
        for n in numbers:
            body = offers_package(
                offer(f"P{n}", inner=rest.format(n=n + 1)), only_changes=True
            )
            write_xml(tmp_path / side / f"rests_1_{n + 1}.xml", body)
    results: dict[str, ExchangeResult] = {}

    def push(side: str) -> None:
        results[side] = _client(exchange_url, use_zip=False).push(tmp_path / side)

    threads = [threading.Thread(target=push, args=(side,)) for side in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert results["a"].ok, results["a"].reason
    assert results["b"].ok, results["b"].reason
    quantities = dict(Stock.objects.values_list("offer__external_id", "quantity"))
    assert {key: int(value) for key, value in quantities.items()} == {
        "P0": 1,
        "P1": 2,
        "P2": 3,
        "P3": 4,
    }
    for side in ("a", "b"):
        session = _session(results[side])
        assert session.files.filter(status=ExchangeFile.Status.IMPORTED).count() == 2
        assert len(list(Path(session.upload_dir).glob("rests_*.xml"))) == 2


def test_import_alone_deactivates_nothing(
    tmp_path: Path, exchange_url: str, settings: Any
) -> None:
    write_xml(
        tmp_path / "all" / "import.xml",
        classifier() + catalog(product("A") + product("B") + product("C")),
    )
    assert _client(exchange_url).push(tmp_path / "all").ok
    write_xml(tmp_path / "only-a" / "import.xml", classifier() + catalog(product("A")))

    imported = _client(exchange_url).push(tmp_path / "only-a")

    assert imported.ok, imported.reason
    assert Product.objects.filter(is_active=True).count() == 3
    held = _client(exchange_url).push(tmp_path / "only-a", deactivate=True)
    assert held.ok, held.reason
    assert Product.objects.filter(is_active=True).count() == 3
    assert "products_held=2" in held.answers("deactivate")[-1]
    assert _session(held).problems.filter(action=ImportProblem.Action.HELD).count() == 1
    settings.EXCHANGE_DEACTIVATE_MAX_SHARE = 0.7
    allowed = _client(exchange_url).push(tmp_path / "only-a", deactivate=True)
    assert allowed.ok, allowed.reason
    assert list(
        Product.objects.filter(is_active=True).values_list("external_id", flat=True)
    ) == ["A"]


def test_package_omitting_most_goods_refused(tmp_path: Path, exchange_url: str) -> None:
    goods = "".join(product(f"P{n}") for n in range(10))
    write_xml(tmp_path / "all" / "import.xml", classifier() + catalog(goods))
    assert _client(exchange_url).push(tmp_path / "all").ok
    write_xml(tmp_path / "one" / "import.xml", classifier() + catalog(product("P0")))

    result = _client(exchange_url).push(
        tmp_path / "one", deactivate=True, complete=True
    )

    assert result.ok, result.reason
    assert Product.objects.filter(is_active=True).count() == 10
    record = _session(result).problems.get(code="deactivation_held")
    assert "9 of 10" in record.message


def test_full_dump_over_two_goods_files(tmp_path: Path, exchange_url: str) -> None:
    write_xml(
        tmp_path / "goods_1_1.xml", classifier() + catalog(product("A") + product("B"))
    )
    write_xml(tmp_path / "goods_1_2.xml", catalog(product("C") + product("D")))

    result = _client(exchange_url).push(tmp_path, deactivate=True)

    assert result.ok, result.reason
    assert Product.objects.filter(is_active=True).count() == 4
    assert _session(result).deactivated == {"products": 0}


def test_zip_in_two_chunks_of_file_limit(
    tmp_path: Path, exchange_url: str, settings: Any
) -> None:
    write_xml(
        tmp_path / "src" / "import.xml",
        classifier() + catalog("".join(product(f"P{n}") for n in range(30))),
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.write(tmp_path / "src" / "import.xml", "import.xml")
    data = buffer.getvalue()
    if len(data) % 2:
        with zipfile.ZipFile(buffer, "a") as bundle:
            bundle.comment = b"x"
        data = buffer.getvalue()
    settings.EXCHANGE_FILE_LIMIT = len(data) // 2
    client = _client(exchange_url)
    client.checkauth()
    client.init()

    client.upload("exchange.zip", data)
    answer = client.import_file("import.xml")

    assert answer[0] == "success"
    uploads = [step for step in client.transcript if step.mode == "file"]
    assert [step.bytes_sent for step in uploads] == [len(data) // 2] * 2
    session = ExchangeSession.objects.get(sessid=client.sessid)
    assert session.unpacked == ["exchange.zip"]
    assert Product.objects.count() == 30
    assert client.import_file("import.xml")[0] == "success"
    assert ExchangeSession.objects.get(pk=session.pk).unpacked == ["exchange.zip"]


@pytest.mark.slow
def test_10k_goods_through_protocol_on_capped_worker(
    tmp_path: Path, exchange_url: str, settings: Any, worker_logs: Path
) -> None:
    from tests.test_memory import MEMORY_CAP_BYTES

    write_sample_package(tmp_path / "pkg", 10_000)
    settings.EXCHANGE_FILE_LIMIT = 4 * 1024 * 1024
    settings.EXCHANGE_IMPORT_QUEUE = "capped-http"
    capped = WorkerProcess(
        "capped-http",
        worker_logs / "capped-http.log",
        pool="solo",
        memory_limit_bytes=MEMORY_CAP_BYTES,
    )
    try:
        capped.wait_ready()
        result = _client(exchange_url, poll_interval=0.5).push(tmp_path / "pkg")
    finally:
        capped.stop()

    assert result.ok, result.reason
    answers = [lines[0] for lines in result.answers("import")]
    assert "progress" in answers
    assert answers[-1] == "success"
    assert Product.objects.count() == 10_000


def test_post_without_trailing_slash(exchange_url: str) -> None:
    response = requests.post(
        exchange_url.rstrip("/"),
        params={"type": "catalog", "mode": "checkauth"},
        auth=(USER, PASSWORD),
        timeout=10,
    )

    assert response.status_code == 200
    assert response.text.startswith("success\n")


def test_concurrent_wrong_logins_are_throttled(exchange_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def attempt(_: int) -> str:
        return requests.get(
            exchange_url,
            params={"type": "catalog", "mode": "checkauth"},
            auth=(USER, "wrong"),
            timeout=20,
        ).text

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(attempt, range(24)))

    refused = [a for a in answers if a.startswith("failure\ninvalid user name")]
    assert len(refused) <= 5
    assert sum(a.startswith("failure\ntoo many failed logins") for a in answers) >= 19


def test_import_of_picture_name_fails(exchange_url: str) -> None:
    client = _client(exchange_url, use_zip=False)
    client.checkauth()
    client.init()
    client.upload("import_files/ab/a.jpg", b"\xff\xd8\xff\xd9")

    answer = _get(
        exchange_url,
        mode="import",
        filename="import_files/ab/a.jpg",
        sessid=client.sessid or "",
    )

    assert answer[0] == "failure"
    assert "not an XML file" in answer[1]


def test_picture_resent_keeps_published_file(
    tmp_path: Path, exchange_url: str, settings: Any
) -> None:
    picture = b"\xff\xd8" + b"A" * 100 + b"\xff\xd9"
    goods = product("P", extra="<Картинка>import_files/rs/p.jpg</Картинка>")
    body = tmp_path / "import.xml"
    write_xml(body, classifier() + catalog(goods))
    client = _client(exchange_url, use_zip=False)
    client.checkauth()
    client.init()
    client.upload("import_files/rs/p.jpg", picture)
    client.upload("import.xml", body.read_bytes())
    assert client.import_file("import.xml")[0] == "success"

    client.upload("import_files/rs/p.jpg", picture)

    published = Path(settings.MEDIA_ROOT) / "catalog" / "rs" / "p.jpg"
    assert published.read_bytes() == picture
