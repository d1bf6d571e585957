"""Cases reported from real exchanges, each imported through the worker."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

from django.core.management import call_command

from freesport.catalog.models import (
    Group,
    Offer,
    Picture,
    Price,
    PriceType,
    Product,
    Stock,
)
from freesport.exchange.models import ExchangeSession, ImportProblem
from tests.helpers import (
    catalog,
    classifier,
    group,
    offer,
    offers_package,
    product,
    run_import,
    write_xml,
)

Status = ExchangeSession.Status
PRICE_TYPE = "<ТипыЦен><ТипЦены><Ид>retail</Ид><Наименование>Розница</Наименование><Валюта>RUB</Валюта></ТипЦены></ТипыЦен>"
WAREHOUSE = (
    "<Склады><Склад><Ид>main</Ид><Наименование>Главный</Наименование></Склад></Склады>"
)


def test_goods_segment_without_classifier_uses_groups_from_other_file(
    tmp_path: Path, worker: object
) -> None:
    write_xml(
        tmp_path / "import0_1.xml",
        classifier(group("G1", "Мячи") + group("G2", "Сетки"))
        + catalog(product("A", group_id="G1")),
    )
    write_xml(tmp_path / "import0_2.xml", catalog(product("B", group_id="G2")))

    session = run_import([tmp_path])

    assert session.status == Status.SUCCEEDED
    assert Product.objects.get(external_id="A").group == Group.objects.get(
        external_id="G1"
    )
    assert Product.objects.get(external_id="B").group == Group.objects.get(
        external_id="G2"
    )


def test_goods_keyed_by_id_not_article(tmp_path: Path, worker: object) -> None:
    goods = [product(f"empty-{n}", sku="") for n in range(44)]
    goods += [
        product(f"pair-{n}-{side}", sku=f"ART-{n}") for n in range(3) for side in "ab"
    ]
    write_xml(tmp_path / "import.xml", classifier() + catalog("".join(goods)))

    session = run_import([tmp_path])

    assert session.status == Status.SUCCEEDED
    assert Product.objects.count() == 50
    assert Product.objects.filter(sku="").count() == 44
    assert Product.objects.filter(sku="ART-1").count() == 2


def test_partial_offers_file_keeps_other_characteristics(
    tmp_path: Path, worker: object
) -> None:
    write_xml(tmp_path / "import.xml", classifier() + catalog(product("P")))
    write_xml(
        tmp_path / "offers.xml",
        offers_package("".join(offer(f"P#v{n}", name=f"v{n}") for n in (1, 2, 3))),
    )
    run_import([tmp_path])
    update = tmp_path / "update"
    write_xml(
        update / "offers.xml",
        offers_package(offer("P#v2", name="v2 new"), only_changes=True),
    )

    session = run_import([update])

    assert session.status == Status.SUCCEEDED
    active = set(
        Offer.objects.filter(is_active=True).values_list("external_id", flat=True)
    )
    assert active == {"P#v1", "P#v2", "P#v3"}
    assert Offer.objects.get(external_id="P#v2").name == "v2 new"


def test_full_offers_file_interleaved_keeps_both(
    tmp_path: Path, worker: object
) -> None:
    write_xml(
        tmp_path / "import.xml", classifier() + catalog(product("P") + product("Q"))
    )
    write_xml(
        tmp_path / "offers.xml",
        offers_package(
            offer("P#v1", name="a") + offer("Q#w1", name="b") + offer("P#v2", name="c")
        ),
    )

    session = run_import([tmp_path])

    assert session.status == Status.SUCCEEDED
    kept = Offer.objects.filter(product__external_id="P", is_active=True)
    assert set(kept.values_list("external_id", flat=True)) == {"P#v1", "P#v2"}


def test_price_formats_parse_to_same_value(tmp_path: Path, worker: object) -> None:
    written = ["1 234,50", "1234,5", "1234.50", "1\u00a0234,50"]
    goods = "".join(product(f"P{n}") for n in range(len(written)))
    write_xml(tmp_path / "import.xml", classifier() + catalog(goods))
    offers = "".join(
        offer(
            f"P{n}",
            inner=f"<Цены><Цена><ИдТипаЦены>retail</ИдТипаЦены><ЦенаЗаЕдиницу>{text}"
            "</ЦенаЗаЕдиницу><Валюта>RUB</Валюта></Цена></Цены>",
        )
        for n, text in enumerate(written)
    )
    write_xml(tmp_path / "offers.xml", offers_package(offers, head=PRICE_TYPE))

    session = run_import([tmp_path])

    assert session.status == Status.SUCCEEDED
    assert (
        list(Price.objects.values_list("value", flat=True)) == [Decimal("1234.50")] * 4
    )


def test_long_size_and_negative_stock_are_recorded(
    tmp_path: Path, worker: object
) -> None:
    size = "X" * 120
    write_xml(tmp_path / "import.xml", classifier() + catalog(product("P")))
    inner = (
        "<ХарактеристикиТовара><ХарактеристикаТовара><Наименование>Размер</Наименование>"
        f"<Значение>{size}</Значение></ХарактеристикаТовара></ХарактеристикиТовара>"
        "<Остатки><Остаток><Склад><Ид>main</Ид><Количество>-3</Количество></Склад>"
        "</Остаток></Остатки>"
    )
    write_xml(
        tmp_path / "offers.xml",
        offers_package(offer("P#big", name="big", inner=inner), head=WAREHOUSE),
    )

    session = run_import([tmp_path])

    assert session.status == Status.PARTIAL
    stored = Offer.objects.get(external_id="P#big")
    assert stored.characteristics == [["Размер", "X" * 100]]
    assert Stock.objects.get(offer=stored).quantity == 0
    codes = set(session.problems.values_list("code", flat=True))
    assert codes == {"value_too_long", "negative_stock"}
    assert set(session.problems.values_list("action", flat=True)) == {"clamped"}
    assert session.problems.get(code="negative_stock").external_id == "P#big"


def test_invalid_pictures_recorded_goods_kept(tmp_path: Path, worker: object) -> None:
    pictures = tmp_path / "import_files" / "ab"
    pictures.mkdir(parents=True)
    (pictures / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0jpeg")
    (pictures / "b.webp").write_bytes(b"RIFFwebp")
    goods = (
        product("A", extra="<Картинка>import_files/ab/a.jpg</Картинка>")
        + product("B", extra="<Картинка>import_files/ab/b.webp</Картинка>")
        + product("C", extra="<Картинка>import_files/ab/missing.jpg</Картинка>")
    )
    write_xml(tmp_path / "import.xml", classifier() + catalog(goods))

    session = run_import([tmp_path])

    assert session.status == Status.PARTIAL
    assert Product.objects.count() == 3
    assert Picture.objects.get().product.external_id == "A"
    problems = session.problems.filter(code="picture_invalid")
    assert problems.count() == 2
    assert set(problems.values_list("external_id", flat=True)) == {"B", "C"}
    assert all(p.file == "import.xml" and p.line for p in problems)


def test_bad_prices_skipped_others_imported(tmp_path: Path, worker: object) -> None:
    write_xml(
        tmp_path / "import.xml", classifier() + catalog(product("P") + product("Q"))
    )
    prices = (
        "<Цены>"
        "<Цена><ИдТипаЦены>retail</ИдТипаЦены><ЦенаЗаЕдиницу>10</ЦенаЗаЕдиницу></Цена>"
        "<Цена><ИдТипаЦены>nosuch</ИдТипаЦены><ЦенаЗаЕдиницу>11</ЦенаЗаЕдиницу></Цена>"
        "<Цена><ЦенаЗаЕдиницу>12</ЦенаЗаЕдиницу></Цена>"
        "</Цены>"
    )
    broken = "<Цены><Цена><ИдТипаЦены>retail</ИдТипаЦены><ЦенаЗаЕдиницу>12р</ЦенаЗаЕдиницу></Цена></Цены>"
    sentinel = "<Цены><Цена><ИдТипаЦены>retail</ИдТипаЦены><ЦенаЗаЕдиницу>-999 999 999,9</ЦенаЗаЕдиницу></Цена></Цены>"
    offers = (
        offer("P", inner=prices)
        + offer("Q", inner=broken)
        + offer("Q#x", inner=sentinel)
    )
    offers += offer("Z", inner=prices)
    write_xml(tmp_path / "offers.xml", offers_package(offers, head=PRICE_TYPE))

    session = run_import([tmp_path])

    assert session.status == Status.PARTIAL
    assert list(Price.objects.values_list("offer__external_id", "value")) == [
        ("P", Decimal("10.00"))
    ]
    codes = sorted(session.problems.values_list("code", flat=True))
    assert codes == [
        "invalid_number",
        "missing_price_type",
        "unknown_price_type",
        "unknown_product",
    ]
    assert session.counts["prices"]["skipped"] == 3
    assert PriceType.objects.count() == 1


def test_deletion_marks_in_three_forms(tmp_path: Path, worker: object) -> None:
    goods = (
        '<Товар Статус="Удален"><Ид>attr</Ид><Наименование>a</Наименование></Товар>'
        "<Товар><Ид>elem</Ид><Наименование>b</Наименование><Статус>Удален</Статус></Товар>"
        "<Товар><Ид>mark</Ид><Наименование>c</Наименование><ПометкаУдаления>true</ПометкаУдаления></Товар>"
        "<Товар><Ид>live</Ид><Наименование>d</Наименование><ПометкаУдаления>false</ПометкаУдаления></Товар>"
    )
    write_xml(tmp_path / "import.xml", classifier() + catalog(goods))

    run_import([tmp_path])

    deleted = set(
        Product.objects.filter(is_deleted=True).values_list("external_id", flat=True)
    )
    assert deleted == {"attr", "elem", "mark"}
    assert list(
        Product.objects.filter(is_active=True).values_list("external_id", flat=True)
    ) == ["live"]


def test_full_package_deactivates_only_after_success(
    tmp_path: Path, worker: object
) -> None:
    goods = [f"P{n}" for n in range(10)]
    write_xml(
        tmp_path / "import.xml", classifier() + catalog("".join(map(product, goods)))
    )
    run_import([tmp_path])
    full = tmp_path / "full"
    write_xml(
        full / "import.xml", classifier() + catalog("".join(map(product, goods[1:])))
    )

    session = run_import([full])

    assert session.status == Status.SUCCEEDED
    assert session.deactivated == {"products": 1}
    assert not Product.objects.get(external_id="P0").is_active
    back = tmp_path / "back"
    write_xml(back / "import.xml", catalog(product("P0"), only_changes=True))
    run_import([back])
    assert Product.objects.get(external_id="P0").is_active
    assert Product.objects.filter(is_active=True).count() == 10


def test_full_package_omitting_most_goods_is_held(
    tmp_path: Path, worker: object
) -> None:
    goods = [f"P{n}" for n in range(10)]
    write_xml(
        tmp_path / "import.xml", classifier() + catalog("".join(map(product, goods)))
    )
    run_import([tmp_path])
    full = tmp_path / "full"
    write_xml(full / "import.xml", classifier() + catalog(product("P0")))

    session = run_import([full])

    assert session.status == Status.SUCCEEDED
    assert session.deactivated == {"products_held": 9}
    assert Product.objects.filter(is_active=True).count() == 10
    held = session.problems.get(code="deactivation_held")
    assert held.action == ImportProblem.Action.HELD
    assert "9 of 10" in held.message
    call_command("onec_deactivate", str(session.pk), "--force", stdout=io.StringIO())
    assert list(
        Product.objects.filter(is_active=True).values_list("external_id", flat=True)
    ) == ["P0"]


def test_full_dump_over_two_goods_files(tmp_path: Path, worker: object) -> None:
    write_xml(tmp_path / "goods_1_1.xml", catalog(product("A") + product("B")))
    write_xml(tmp_path / "goods_1_2.xml", catalog(product("C") + product("D")))

    session = run_import([tmp_path])

    assert session.status == Status.SUCCEEDED
    assert Product.objects.filter(is_active=True).count() == 4


def test_partial_package_never_deactivates(tmp_path: Path, worker: object) -> None:
    write_xml(
        tmp_path / "import.xml", classifier() + catalog(product("A") + product("B"))
    )
    run_import([tmp_path])
    update = tmp_path / "update"
    write_xml(update / "import.xml", catalog(product("A"), only_changes=True))

    session = run_import([update])

    assert session.deactivated == {}
    assert Product.objects.filter(is_active=True).count() == 2


def test_windows_1251_and_namespaces(tmp_path: Path, worker: object) -> None:
    body = classifier(group("G", "Лыжи")) + catalog(
        product("P", "Лыжи беговые", group_id="G")
    )
    write_xml(tmp_path / "a" / "import.xml", body, encoding="windows-1251")
    for index, namespace in enumerate(
        [
            "",
            "urn:1C.ru:commerceml2",
            "urn:1C.ru:commerceml_2",
            "urn:1C.ru:commerceml_210",
        ]
    ):
        text = body.replace("<Ид>P</Ид>", f"<Ид>P{index}</Ид>")
        path = write_xml(tmp_path / f"ns{index}" / "import.xml", text, bom=True)
        data = path.read_bytes().replace(
            b'xmlns="urn:1C.ru:commerceml_3"',
            f'xmlns="{namespace}"'.encode() if namespace else b"",
        )
        path.write_bytes(data)

    session = run_import(
        sorted(p for p in tmp_path.iterdir()), deactivate_missing=False
    )

    assert session.status == Status.SUCCEEDED
    assert Product.objects.get(external_id="P").name == "Лыжи беговые"
    assert Product.objects.filter(group__name="Лыжи").count() == 5


def test_broken_files_refused_and_nothing_deactivated(
    tmp_path: Path, worker: object
) -> None:
    write_xml(
        tmp_path / "import.xml", classifier() + catalog(product("A") + product("B"))
    )
    run_import([tmp_path])
    cases = {
        "truncated": (tmp_path / "import.xml")
        .read_text(encoding="utf-8")
        .replace("<Ид>B</Ид>", "<Ид>C</Ид>")[:-80],
        "entity": '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]>\n'
        "<КоммерческаяИнформация><Каталог><Товары><Товар><Ид>&ext;</Ид></Товар></Товары></Каталог></КоммерческаяИнформация>",
        "laughs": '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
        + "".join(
            f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">\n'
            for n in range(1, 10)
        )
        + "]>\n<КоммерческаяИнформация><Каталог><Товары><Товар><Ид>&lol9;</Ид></Товар></Товары></Каталог></КоммерческаяИнформация>",
    }
    for case, text in cases.items():
        package = tmp_path / case
        package.mkdir()
        write_xml(package / "goods_1_1.xml", catalog(product("A")))
        (package / "goods_1_2.xml").write_text(text, encoding="utf-8")

        session = run_import([package])

        assert session.status == Status.FAILED, case
        assert session.deactivated == {}, case
        assert Product.objects.filter(is_active=True).count() >= 2, case
        failure = session.problems.get(action=ImportProblem.Action.FILE_FAILED)
        assert failure.file == "goods_1_2.xml", case
        assert failure.line, case
        assert "goods_1_2.xml" in session.files.get(name="goods_1_2.xml").error, case
    assert not Product.objects.filter(name__contains="root:").exists()


def test_old_session_deactivation_spares_later_goods(
    tmp_path: Path, worker: object
) -> None:
    goods = [f"P{n}" for n in range(10)]
    write_xml(
        tmp_path / "import.xml", classifier() + catalog("".join(map(product, goods)))
    )
    run_import([tmp_path])
    full = tmp_path / "full"
    write_xml(full / "import.xml", classifier() + catalog(product("P0")))
    held = run_import([full])
    later = tmp_path / "later"
    write_xml(
        later / "import.xml", catalog(product("P5") + product("NEW"), only_changes=True)
    )
    run_import([later])

    call_command("onec_deactivate", str(held.pk), "--force", stdout=io.StringIO())

    active = set(
        Product.objects.filter(is_active=True).values_list("external_id", flat=True)
    )
    assert active == {"P0", "P5", "NEW"}
    assert held.problems.filter(code="deactivation_held").count() == 1


def test_offers_named_in_prices_are_reactivated(tmp_path: Path, worker: object) -> None:
    goods = "".join(product(f"P{n}") for n in range(10))
    prices = "".join(
        offer(
            f"P{n}",
            inner="<Цены><Цена><ИдТипаЦены>retail</ИдТипаЦены><ЦенаЗаЕдиницу>5</ЦенаЗаЕдиницу></Цена></Цены>",
        )
        for n in range(10)
    )
    write_xml(tmp_path / "import.xml", classifier() + catalog(goods))
    write_xml(tmp_path / "prices.xml", offers_package(prices, head=PRICE_TYPE))
    run_import([tmp_path])
    Offer.objects.filter(external_id="P3").update(is_active=False)

    run_import([tmp_path / "prices.xml"], deactivate_missing=False)

    assert Offer.objects.get(external_id="P3").is_active


def test_picture_with_same_size_is_replaced(
    tmp_path: Path, worker: object, settings: object
) -> None:
    for side, fill in (("a", b"A"), ("b", b"B")):
        folder = tmp_path / side
        (folder / "import_files" / "ab").mkdir(parents=True)
        (folder / "import_files" / "ab" / "p.jpg").write_bytes(
            b"\xff\xd8" + fill * 16 + b"\xff\xd9"
        )
        extra = "<Картинка>import_files/ab/p.jpg</Картинка>" + (
            "<Описание>new</Описание>" if side == "b" else ""
        )
        write_xml(
            folder / "import.xml", classifier() + catalog(product("P", extra=extra))
        )

    run_import([tmp_path / "a"])
    run_import([tmp_path / "b"])

    stored = Picture.objects.get().image.path
    assert Path(stored).read_bytes() == b"\xff\xd8" + b"B" * 16 + b"\xff\xd9"


def test_non_commerceml_root_fails_file(tmp_path: Path, worker: object) -> None:
    (tmp_path / "import.xml").write_text("<html><body/></html>", encoding="utf-8")

    session = run_import([tmp_path])

    assert session.status == Status.FAILED
    problem = session.problems.get(action=ImportProblem.Action.FILE_FAILED)
    assert "not КоммерческаяИнформация" in problem.message


def test_overlong_picture_path_is_a_problem(tmp_path: Path, worker: object) -> None:
    long_name = "import_files/" + "x" * 300 + ".jpg"
    write_xml(
        tmp_path / "import.xml",
        classifier() + catalog(product("P", extra=f"<Картинка>{long_name}</Картинка>")),
    )

    session = run_import([tmp_path])

    assert session.status == Status.PARTIAL
    assert Product.objects.count() == 1
    assert session.problems.get().code == "picture_invalid"
