"""Every real exchange sample imports through the worker with the counts it contains."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
from lxml import etree

from freesport.catalog.models import Group, Offer, Price, Product, Stock
from freesport.exchange.models import ExchangeSession
from tests.helpers import run_import

SETS = [
    "ut11-commerceml-3.1",
    "bitrix-module-commerceml-3.1",
    "bitrix-split-2.07",
    "official-1c-2.04",
    "cs-cart-2.04",
]
SENTINEL = Decimal("-999999999.9")


@dataclass
class Expected:
    groups: set[str] = field(default_factory=set)
    products: set[str] = field(default_factory=set)
    price_types: set[str] = field(default_factory=set)
    warehouses: set[str] = field(default_factory=set)
    offers: set[str] = field(default_factory=set)
    prices: set[tuple[str, str]] = field(default_factory=set)
    stock: set[tuple[str, str]] = field(default_factory=set)


def _number(text: str | None) -> Decimal | None:
    if not text:
        return None
    try:
        value = Decimal(text.replace("\u00a0", "").replace(" ", "").replace(",", "."))
    except InvalidOperation:
        return None
    return None if value == SENTINEL else value


def _ids(tree: etree._ElementTree, xpath: str) -> set[str]:
    return {(t or "").strip() for t in tree.xpath(xpath)} - {""}


def expected_counts(folder: Path) -> Expected:
    """Count what the files contain with plain XPath, independently of the reader."""
    files = [
        p for p in sorted(folder.rglob("*.xml"))
        if "import_files" not in p.parts
        and etree.parse(str(p)).getroot().xpath("local-name()") == "КоммерческаяИнформация"
    ]  # fmt: skip
    trees = [etree.parse(str(p)) for p in files]
    result = Expected()
    for tree in trees:
        result.groups |= _ids(
            tree,
            "//*[local-name()='Классификатор']//*[local-name()='Группа']/*[local-name()='Ид']/text()",
        )
        result.products |= _ids(
            tree,
            "/*/*[local-name()='Каталог']/*[local-name()='Товары']/*[local-name()='Товар']/*[local-name()='Ид']/text()",
        )
        result.price_types |= _ids(
            tree, "//*[local-name()='ТипЦены']/*[local-name()='Ид']/text()"
        )
        result.warehouses |= _ids(
            tree,
            "//*[local-name()='Склады']/*[local-name()='Склад']/*[local-name()='Ид']/text()",
        )
    for tree in trees:
        for item in tree.xpath(
            "/*/*[local-name()='ПакетПредложений']/*[local-name()='Предложения']/*[local-name()='Предложение']"
        ):
            offer_id = item.xpath("string(*[local-name()='Ид'])").strip()
            if (
                offer_id not in result.products
                and offer_id.partition("#")[0] not in result.products
            ):
                continue
            result.offers.add(offer_id)
            for price in item.xpath("*[local-name()='Цены']/*[local-name()='Цена']"):
                kind = price.xpath("string(*[local-name()='ИдТипаЦены'])").strip()
                value = _number(price.xpath("string(*[local-name()='ЦенаЗаЕдиницу'])"))
                if kind in result.price_types and value is not None:
                    result.prices.add((offer_id, kind))
            for store in item.xpath("*[local-name()='Склад']"):
                if store.get("ИдСклада") in result.warehouses:
                    result.stock.add((offer_id, store.get("ИдСклада")))
            for store in item.xpath(
                "*[local-name()='Остатки']/*[local-name()='Остаток']/*[local-name()='Склад']"
            ):
                warehouse = store.xpath("string(*[local-name()='Ид'])").strip()
                if (
                    warehouse in result.warehouses
                    and _number(store.xpath("string(*[local-name()='Количество'])"))
                    is not None
                ):
                    result.stock.add((offer_id, warehouse))
    return result


@pytest.mark.parametrize("name", SETS)
def test_sample_set_imports_with_file_counts(
    name: str, samples_dir: Path, worker: object
) -> None:
    folder = samples_dir / name
    expected = expected_counts(folder)

    session = run_import([folder])

    assert session.status in (
        ExchangeSession.Status.SUCCEEDED,
        ExchangeSession.Status.PARTIAL,
    ), session.error
    assert not session.files.filter(status="failed").exists()
    assert Group.objects.count() == len(expected.groups)
    assert Product.objects.count() == len(expected.products)
    assert set(Offer.objects.values_list("external_id", flat=True)) == expected.offers
    assert Price.objects.count() == len(expected.prices)
    assert Stock.objects.count() == len(expected.stock)


def test_bitrix_module_counts_match_its_readme(
    samples_dir: Path, worker: object
) -> None:
    session = run_import([samples_dir / "bitrix-module-commerceml-3.1"])

    assert session.status == ExchangeSession.Status.SUCCEEDED
    assert Product.objects.count() == 21
    assert Offer.objects.count() == 86
    assert Price.objects.count() == 86
    assert Stock.objects.count() == 1032


def test_ut11_group_tree_and_repeat_import(samples_dir: Path, worker: object) -> None:
    folder = samples_dir / "ut11-commerceml-3.1"
    first = run_import([folder])
    ids_before = dict(Product.objects.values_list("external_id", "pk"))

    second = run_import([folder])

    assert Group.objects.count() == 119
    assert Group.objects.filter(parent__isnull=True).count() < 119
    assert first.counts["products"]["created"] == Product.objects.count()
    assert second.counts["products"]["created"] == 0
    assert second.counts["products"]["updated"] == 0
    for entity, row in second.counts.items():
        assert row["created"] == 0, entity
        assert row["updated"] == 0, entity
    assert dict(Product.objects.values_list("external_id", "pk")) == ids_before
