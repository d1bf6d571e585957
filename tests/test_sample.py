"""Tests of the sample CommerceML package generator.

The checks parse the written files with lxml on their own and compare the result with
the summary, so that a wrong count in either the files or the summary fails.
"""

from __future__ import annotations

import codecs
import hashlib
import random
import re
import uuid
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from worker.commerceml.sample import (
    GENERATED_AT,
    TINY_JPEG,
    ZERO_UUID,
    SampleSummary,
    _create_reference,
    write_sample_package,
)

NAMESPACE = "urn:1C.ru:commerceml_3"
SEGMENT_NAME = re.compile(r"^(goods|offers|prices|rests)_1_(\d+)_([0-9a-f-]{36})\.xml$")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleSummary]:
    outdir = tmp_path_factory.mktemp("package")
    summary = write_sample_package(outdir, 1000, seed=1, goods_per_file=300)
    return outdir, summary


def _hash_tree(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _parse(path: Path) -> etree._Element:
    return etree.parse(str(path)).getroot()


def _elements(paths: list[Path], tag: str) -> list[etree._Element]:
    """Return all elements with local name ``tag`` in the files, in file order."""
    return [element for path in paths for element in _parse(path).iter(f"{{*}}{tag}")]


def _segments(outdir: Path, kind: str) -> list[Path]:
    """Return the segment files of one kind ordered by segment number."""
    paths = [
        path for path in outdir.glob(f"{kind}_1_*.xml") if SEGMENT_NAME.match(path.name)
    ]
    return sorted(paths, key=lambda path: int(SEGMENT_NAME.match(path.name).group(2)))  # type: ignore[union-attr]


def _child_text(element: etree._Element, tag: str) -> str:
    child = element.find(f"{{*}}{tag}")
    assert child is not None, f"<{tag}> missing in <{etree.QName(element).localname}>"
    return child.text or ""


def _offer_ids(paths: list[Path]) -> list[str]:
    return [_child_text(offer, "Ид") for offer in _elements(paths, "Предложение")]


def _good_ids(outdir: Path) -> list[str]:
    return [
        _child_text(good, "Ид")
        for good in _elements(_segments(outdir, "goods"), "Товар")
    ]


def test_same_arguments_write_identical_bytes(tmp_path: Path) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    write_sample_package(first, 120, seed=7, goods_per_file=50)
    write_sample_package(second, 120, seed=7, goods_per_file=50)

    first_hashes = _hash_tree(first)
    assert len(first_hashes) > 12
    assert first_hashes == _hash_tree(second)


def test_other_seed_writes_other_ids(tmp_path: Path) -> None:
    write_sample_package(tmp_path / "one", 50, seed=1)
    write_sample_package(tmp_path / "two", 50, seed=2)

    assert set(_good_ids(tmp_path / "one")).isdisjoint(_good_ids(tmp_path / "two"))


def test_summary_matches_parsed_counts(package: tuple[Path, SampleSummary]) -> None:
    outdir, summary = package
    properties_files = sorted(outdir.glob("properties*_1_1_*.xml"))
    assert len(properties_files) == 2
    price_files = _segments(outdir, "prices")
    rest_files = _segments(outdir, "rests")

    assert summary.groups == len(_elements([outdir / "groups.xml"], "Группа"))
    assert summary.properties == len(_elements(properties_files, "Свойство"))
    dictionary_values = [
        value
        for path in properties_files
        for value in _parse(path).iterfind(".//{*}ВариантыЗначений/{*}Справочник")
    ]
    assert summary.property_values == len(dictionary_values)
    assert summary.price_types == len(_elements([outdir / "priceLists.xml"], "ТипЦены"))
    assert summary.warehouses == len(_elements([outdir / "storages.xml"], "Склад"))
    assert summary.units == len(_elements([outdir / "units.xml"], "ЕдиницаИзмерения"))
    assert summary.goods == 1000
    assert summary.goods == len(_elements(_segments(outdir, "goods"), "Товар"))
    assert summary.characteristic_offers == len(
        _elements(_segments(outdir, "offers"), "Предложение")
    )
    assert summary.offers == len(_elements(price_files, "Предложение"))
    assert summary.offers == len(_elements(rest_files, "Предложение"))
    assert summary.prices == len(_elements(price_files, "Цена"))
    assert summary.prices == summary.offers * summary.price_types
    assert summary.stock_rows == len(_elements(rest_files, "Остаток"))
    assert summary.stock_rows == summary.offers * summary.warehouses
    assert summary.pictures == len(_elements(_segments(outdir, "goods"), "Картинка"))
    assert summary.pictures == len(list((outdir / "import_files").rglob("*.jpg")))


def test_summary_counts_ranges(package: tuple[Path, SampleSummary]) -> None:
    _, summary = package
    # max(10, 1000 // 50) groups, capped at 2000.
    assert summary.groups == 20
    assert summary.properties == 6
    assert summary.price_types == 4
    assert summary.warehouses == 3
    assert summary.units == 4
    # About 1 in 3 goods has 2 to 4 characteristic offers, the rest one default offer.
    default_offers = summary.offers - summary.characteristic_offers
    characteristic_goods = summary.goods - default_offers
    assert 250 <= characteristic_goods <= 420
    assert 2 * characteristic_goods <= summary.characteristic_offers
    assert summary.characteristic_offers <= 4 * characteristic_goods
    assert 0 < summary.pictures <= 2 * summary.goods


def test_group_count_has_minimum(tmp_path: Path) -> None:
    summary = write_sample_package(tmp_path, 0)

    assert summary.groups == 10
    assert len(_elements([tmp_path / "groups.xml"], "Группа")) == 10


def test_group_count_is_capped() -> None:
    # Builds only the classifier data, because writing 500,000 goods takes too long.
    reference = _create_reference(random.Random(1), 500_000)

    assert reference.group_count == 2000
    assert len(reference.leaf_group_ids) == 2000 - 2000 // 25 - 2000 // 5


def test_files_list_matches_xml_on_disk(package: tuple[Path, SampleSummary]) -> None:
    outdir, summary = package
    on_disk = sorted(path.name for path in outdir.glob("*.xml"))

    assert sorted(path.name for path in summary.files) == on_disk
    assert all(path.parent == outdir for path in summary.files)
    names = [path.name for path in summary.files]
    assert names[:6] == [
        "groups.xml",
        names[1],
        names[2],
        "priceLists.xml",
        "storages.xml",
        "units.xml",
    ]
    assert re.fullmatch(r"propertiesGoods_1_1_[0-9a-f-]{36}\.xml", names[1])
    assert re.fullmatch(r"propertiesOffers_1_1_[0-9a-f-]{36}\.xml", names[2])
    kinds = [SEGMENT_NAME.match(name).group(1) for name in names[6:]]  # type: ignore[union-attr]
    assert kinds == ["goods"] * 4 + ["offers"] * 4 + ["prices"] * 4 + ["rests"] * 4


def test_every_xml_file_parses_with_1c_root(
    package: tuple[Path, SampleSummary],
) -> None:
    _, summary = package
    for path in summary.files:
        text = path.read_bytes().removeprefix(codecs.BOM_UTF8).decode("utf-8")
        assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n'), path.name

        root = _parse(path)
        assert root.tag == f"{{{NAMESPACE}}}КоммерческаяИнформация", path.name
        assert root.get("ВерсияСхемы") == "3.1", path.name
        assert root.get("ДатаФормирования") == GENERATED_AT, path.name
        assert root.get("Ид") == "Обмен с сайтом", path.name
        # 1C indents with tabs.
        assert "\n\t<" in text, path.name
        assert "\n  <" not in text, path.name


def test_bom_on_all_files_but_goods(package: tuple[Path, SampleSummary]) -> None:
    _, summary = package
    for path in summary.files:
        starts_with_bom = path.read_bytes().startswith(codecs.BOM_UTF8)
        if path.name.startswith("goods_"):
            assert not starts_with_bom, path.name
        else:
            assert starts_with_bom, path.name


def test_segments_follow_goods_per_file(tmp_path: Path) -> None:
    summary = write_sample_package(tmp_path, 23, seed=3, goods_per_file=5)

    for kind in ("goods", "offers", "prices", "rests"):
        numbers = sorted(
            int(SEGMENT_NAME.match(path.name).group(2))  # type: ignore[union-attr]
            for path in _segments(tmp_path, kind)
        )
        assert numbers == [1, 2, 3, 4, 5], kind

    goods_files = _segments(tmp_path, "goods")
    goods_per_segment = [len(_elements([path], "Товар")) for path in goods_files]
    assert goods_per_segment == [5, 5, 5, 5, 3]
    assert summary.goods == 23

    # Offers, prices and rests segments contain only offers of the goods in the goods
    # segment with the same number, and the prices segment covers all of those goods.
    for number, goods_file in enumerate(goods_files):
        good_ids = {
            _child_text(good, "Ид") for good in _elements([goods_file], "Товар")
        }
        for kind in ("offers", "prices", "rests"):
            offer_file = _segments(tmp_path, kind)[number]
            owners = {offer_id.split("#")[0] for offer_id in _offer_ids([offer_file])}
            assert owners <= good_ids, offer_file.name
        prices_owners = {
            offer_id.split("#")[0]
            for offer_id in _offer_ids([_segments(tmp_path, "prices")[number]])
        }
        assert prices_owners == good_ids


def test_one_segment_per_good(tmp_path: Path) -> None:
    write_sample_package(tmp_path, 3, goods_per_file=1)

    assert len(_segments(tmp_path, "goods")) == 3
    assert len(_segments(tmp_path, "rests")) == 3


def test_zero_goods_writes_classifier_only(tmp_path: Path) -> None:
    summary = write_sample_package(tmp_path, 0)

    assert summary.goods == 0
    assert summary.offers == 0
    assert summary.pictures == 0
    assert len(summary.files) == 6
    assert not (tmp_path / "import_files").exists()


def test_pictures_exist_as_jpeg(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    goods = _elements(_segments(outdir, "goods"), "Товар")
    counts: Counter[int] = Counter()
    for good in goods:
        good_id = _child_text(good, "Ид")
        pictures = [picture.text or "" for picture in good.iterfind("{*}Картинка")]
        counts[len(pictures)] += 1
        for picture in pictures:
            assert picture.startswith(f"import_files/{good_id[:2]}/{good_id}_"), picture
            assert picture.endswith(".jpg"), picture
            path = outdir / picture
            assert path.is_file(), picture
            assert path.read_bytes() == TINY_JPEG, picture

    assert set(counts) == {0, 1, 2}


def test_tiny_jpeg_is_baseline_jpeg() -> None:
    assert TINY_JPEG.startswith(b"\xff\xd8\xff\xe0")
    assert TINY_JPEG[6:11] == b"JFIF\x00"
    assert b"\xff\xc0\x00\x0b\x08\x00\x01\x00\x01" in TINY_JPEG
    assert TINY_JPEG.endswith(b"\xff\xd9")


def test_offer_ids_match_goods(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    good_ids = _good_ids(outdir)
    characteristic_ids = _offer_ids(_segments(outdir, "offers"))
    price_ids = _offer_ids(_segments(outdir, "prices"))
    rest_ids = _offer_ids(_segments(outdir, "rests"))

    assert len(set(good_ids)) == len(good_ids)
    assert len(set(price_ids)) == len(price_ids)
    assert price_ids == rest_ids
    assert all(offer_id.count("#") == 1 for offer_id in characteristic_ids)
    assert set(characteristic_ids) <= set(price_ids)
    # A good has either characteristic offers or a default offer under its bare id.
    owners = {offer_id.split("#")[0] for offer_id in characteristic_ids}
    bare_ids = {offer_id for offer_id in price_ids if "#" not in offer_id}
    assert owners.isdisjoint(bare_ids)
    assert owners | bare_ids == set(good_ids)


def test_ids_are_version_4_uuids(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    for good_id in _good_ids(outdir):
        assert uuid.UUID(good_id).version == 4, good_id
    for offer_id in _offer_ids(_segments(outdir, "offers")):
        for part in offer_id.split("#"):
            assert uuid.UUID(part).version == 4, offer_id


def test_references_point_to_classifier(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    groups = _elements([outdir / "groups.xml"], "Группа")
    leaf_ids = {
        _child_text(group, "Ид") for group in groups if group.find("{*}Группы") is None
    }
    price_type_ids = [
        _child_text(price_type, "Ид")
        for price_type in _elements([outdir / "priceLists.xml"], "ТипЦены")
    ]
    warehouse_ids = [
        _child_text(warehouse, "Ид")
        for warehouse in _elements([outdir / "storages.xml"], "Склад")
    ]
    unit_ids = {
        _child_text(unit, "Ид")
        for unit in _elements([outdir / "units.xml"], "ЕдиницаИзмерения")
    }
    properties = _elements(sorted(outdir.glob("properties*_1_1_*.xml")), "Свойство")
    value_ids = {
        _child_text(prop, "Ид"): {
            _child_text(value, "ИдЗначения")
            for value in prop.iterfind("{*}ВариантыЗначений/{*}Справочник")
        }
        for prop in properties
    }

    for good in _elements(_segments(outdir, "goods"), "Товар"):
        group_refs = [element.text for element in good.iterfind("{*}Группы/{*}Ид")]
        assert len(group_refs) == 1
        assert group_refs[0] in leaf_ids
        assert _child_text(good, "БазоваяЕдиница") in unit_ids
        for value in good.iterfind("{*}ЗначенияСвойств/{*}ЗначенияСвойства"):
            property_id = _child_text(value, "Ид")
            assert property_id in value_ids
            text = _child_text(value, "Значение")
            if value_ids[property_id] and text not in ("", ZERO_UUID):
                assert text in value_ids[property_id]

    for offer in _elements(_segments(outdir, "offers"), "Предложение"):
        for value in offer.iterfind("{*}ЗначенияСвойств/{*}ЗначенияСвойства"):
            assert _child_text(value, "Значение") in value_ids[_child_text(value, "Ид")]

    for offer in _elements(_segments(outdir, "prices"), "Предложение"):
        refs = [
            _child_text(price, "ИдТипаЦены")
            for price in offer.iterfind("{*}Цены/{*}Цена")
        ]
        assert refs == price_type_ids

    for offer in _elements(_segments(outdir, "rests"), "Предложение"):
        refs = [
            element.text or ""
            for element in offer.iterfind("{*}Остатки/{*}Остаток/{*}Склад/{*}Ид")
        ]
        assert refs == warehouse_ids


def test_group_tree_has_three_levels(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    classifier = _parse(outdir / "groups.xml").find("{*}Классификатор")
    assert classifier is not None

    def depths(parent: etree._Element, depth: int) -> list[int]:
        result = []
        for group in parent.iterfind("{*}Группы/{*}Группа"):
            result.append(depth)
            result.extend(depths(group, depth + 1))
        return result

    level_counts = Counter(depths(classifier, 1))
    assert set(level_counts) == {1, 2, 3}
    assert sum(level_counts.values()) == 20


def test_classifier_files_have_1c_envelopes(
    package: tuple[Path, SampleSummary],
) -> None:
    outdir, summary = package
    goods_catalog = _elements(_segments(outdir, "goods")[:1], "Каталог")[0]
    catalog_id = _child_text(goods_catalog, "Ид")
    classifier_id = _child_text(goods_catalog, "ИдКлассификатора")

    for path in summary.files[:6]:
        root = _parse(path)
        children = [etree.QName(child).localname for child in root]
        classifier = root.find("{*}Классификатор")
        assert classifier is not None, path.name
        assert _child_text(classifier, "Ид") == classifier_id, path.name
        if path.name.startswith("propertiesOffers_"):
            # 1C wraps the offer properties in an empty offer package envelope.
            assert children == ["ПакетПредложений", "Классификатор"], path.name
            envelope = root.find("{*}ПакетПредложений")
            assert envelope is not None
            assert _child_text(envelope, "ИдКаталога") == catalog_id
            assert envelope.find("{*}Предложения") is None
        else:
            assert children == ["Каталог", "Классификатор"], path.name
            catalog = root.find("{*}Каталог")
            assert catalog is not None
            assert catalog.get("СодержитТолькоИзменения") == "false"
            assert _child_text(catalog, "Ид") == catalog_id, path.name
            assert catalog.find("{*}Товары") is None, path.name


def test_offer_packages_name_catalog(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    catalog_id = _child_text(_elements(_segments(outdir, "goods"), "Каталог")[0], "Ид")
    for kind in ("offers", "prices", "rests"):
        for path in _segments(outdir, kind):
            package_element = _parse(path).find("{*}ПакетПредложений")
            assert package_element is not None, path.name
            assert _child_text(package_element, "ИдКаталога") == catalog_id
            # 1C writes the package id as "#" and the catalog id.
            assert _child_text(package_element, "Ид") == f"#{catalog_id}"


def test_units_keep_trailing_space(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    units = _elements([outdir / "units.xml"], "ЕдиницаИзмерения")
    piece = [unit for unit in units if _child_text(unit, "Ид") == "796 "]

    assert len(piece) == 1
    assert _child_text(piece[0], "Код") == "796 "
    assert _child_text(piece[0], "НаименованиеКраткое") == "шт"
    assert _child_text(piece[0], "НаименованиеПолное") == "Штука"


def test_goods_carry_1c_quirks(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    goods = _elements(_segments(outdir, "goods"), "Товар")
    articles = [_child_text(good, "Артикул") for good in goods]
    barcodes = [_child_text(good, "Штрихкод") for good in goods]
    values = [
        _child_text(value, "Значение")
        for good in goods
        for value in good.iterfind("{*}ЗначенияСвойств/{*}ЗначенияСвойства")
    ]
    descriptions = [_child_text(good, "Описание") for good in goods]

    # About 1 in 20 articles is empty, and some pairs of goods share one.
    assert 20 <= articles.count("") <= 90
    shared = [
        article for article, count in Counter(articles).items() if article and count > 1
    ]
    assert shared
    assert all(Counter(articles)[article] == 2 for article in shared)

    assert "" in barcodes
    filled_barcodes = [barcode for barcode in barcodes if barcode]
    assert filled_barcodes
    for barcode in filled_barcodes:
        assert re.fullmatch(r"\d{13}", barcode), barcode
        weighted = sum(
            int(digit) * (3 if index % 2 else 1) for index, digit in enumerate(barcode)
        )
        assert weighted % 10 == 0, barcode

    assert "" in values
    assert ZERO_UUID in values
    assert any("<br>" in description for description in descriptions)
    assert all(_child_text(good, "ПометкаУдаления") == "false" for good in goods)
    assert all(_child_text(good, "Наименование") for good in goods)


def test_goods_file_escapes_markup(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    text = "".join(path.read_text("utf-8") for path in _segments(outdir, "goods"))

    assert "&lt;br&gt;" in text
    assert "<br>" not in text
    assert "&amp;" in text


def test_characteristics_carry_1c_quirks(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    offers = _elements(_segments(outdir, "offers"), "Предложение")
    characteristics = [
        (_child_text(item, "Наименование"), _child_text(item, "Значение"))
        for offer in offers
        for item in offer.iterfind("{*}ХарактеристикиТовара/{*}ХарактеристикаТовара")
    ]
    box_weights = {
        value for name, value in characteristics if name == "Вес коробки (кг)"
    }

    assert {name for name, _ in characteristics} == {
        "Размер",
        "Цвет",
        "Вес, кг",
        "Вес коробки (кг)",
    }
    assert "21,6" in box_weights
    assert "-999 999 999,9" in box_weights
    assert "" in box_weights
    for offer in offers:
        name = _child_text(offer, "Наименование")
        assert re.search(r" \(.+\)$", name), name


def test_prices_use_varied_number_formats(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    prices = _elements(_segments(outdir, "prices"), "Цена")
    amounts = [_child_text(price, "ЦенаЗаЕдиницу") for price in prices]
    formats = {
        "dot": r"\d+(\.\d{1,2})?",
        "comma": r"\d+,\d{2}",
        "space": r"\d{1,3}( \d{3})+,\d{2}",
        "no-break space": r"\d{1,3}(\u00a0\d{3})+,\d{2}",
    }

    for name, pattern in formats.items():
        assert any(re.fullmatch(pattern, amount) for amount in amounts), name
    for amount in amounts:
        assert any(re.fullmatch(pattern, amount) for pattern in formats.values()), (
            amount
        )
        assert (
            float(amount.replace("\u00a0", "").replace(" ", "").replace(",", ".")) > 0
        )
    assert all(_child_text(price, "Валюта") == "руб" for price in prices)


def test_price_presentation_like_1c(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    prices = _elements(_segments(outdir, "prices"), "Цена")
    presentations = [_child_text(price, "Представление") for price in prices]

    for presentation in presentations:
        assert re.fullmatch(r"\d{1,3}(\u00a0\d{3})*(,\d{2})? руб", presentation)
    assert any("\u00a0" in presentation for presentation in presentations)
    assert any("," not in presentation for presentation in presentations)


def test_stock_quantities_are_non_negative(package: tuple[Path, SampleSummary]) -> None:
    outdir, _ = package
    quantities = [
        element.text or ""
        for element in _elements(_segments(outdir, "rests"), "Количество")
    ]

    assert all(re.fullmatch(r"\d+(,\d{3})?", quantity) for quantity in quantities)
    assert "0" in quantities
    assert any("," in quantity for quantity in quantities)


def test_negative_goods_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="goods must be 0 or more"):
        write_sample_package(tmp_path, -1)


def test_zero_goods_per_file_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="goods_per_file must be 1 or more"):
        write_sample_package(tmp_path, 10, goods_per_file=0)


def test_non_empty_outdir_raises(tmp_path: Path) -> None:
    (tmp_path / "old.xml").write_text("<x/>")

    with pytest.raises(FileExistsError, match="not empty"):
        write_sample_package(tmp_path, 10)
