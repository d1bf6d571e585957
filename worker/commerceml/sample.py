"""Generator of a deterministic, segmented CommerceML 3.1 exchange package.

The package imitates what 1C:Управление торговлей 11.5 with the site-exchange
extension leaves after unzip: classifier files (groups, properties, price types,
warehouses, units), numbered segments of goods, offers, prices and rests, and the
pictures under ``import_files``. Element order and envelopes follow a real UT 11.5
export. The package also carries quirks that an importer must handle: empty and
shared articles, empty and all-zero property values, empty characteristic values,
decimal commas, prices grouped with regular or no-break spaces, 1C's "no value"
sentinel ``-999 999 999,9``, trailing spaces in codes and names, and a UTF-8 BOM on
every file except the goods segments.

Every file is written element by element through a buffered handle, so memory does
not grow with the number of goods.
"""

from __future__ import annotations

import base64
import codecs
import os
import random
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape

GENERATED_AT = "2026-01-15T10:00:00"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
ROOT_START = (
    '<КоммерческаяИнформация xmlns="urn:1C.ru:commerceml_3" '
    'xmlns:xs="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    f'ВерсияСхемы="3.1" ДатаФормирования="{GENERATED_AT}" Ид="Обмен с сайтом">\n'
)
ROOT_END = "</КоммерческаяИнформация>\n"

# 1C names the classifier like the catalog.
CATALOG_NAME = "Товары 1С"
OFFER_PACKAGE_NAME = "Пакет предложений (Товары 1С)"
PICTURES_DIR = "import_files"

# The group tree has three levels, and goods sit only in third-level groups.
MIN_GROUPS = 10
MAX_GROUPS = 2000
GOODS_PER_GROUP = 50

# Shares of goods or values that get each quirk, as probabilities per draw.
CHARACTERISTICS_SHARE = 1 / 3
EMPTY_ARTICLE_SHARE = 0.05
SHARED_ARTICLE_SHARE = 0.02
BARCODE_SHARE = 0.3
EMPTY_DESCRIPTION_SHARE = 0.15
EMPTY_VALUE_SHARE = 0.04
ZERO_VALUE_SHARE = 0.04
EMPTY_COUNTRY_SHARE = 0.1
NO_PICTURE_SHARE = 0.55
TWO_PICTURES_SHARE = 0.1
ZERO_STOCK_SHARE = 0.3
DECIMAL_STOCK_SHARE = 0.15

MIN_CHARACTERISTIC_OFFERS = 2
MAX_CHARACTERISTIC_OFFERS = 4
MIN_PRICE_KOPECKS = 99_00
MAX_PRICE_KOPECKS = 150_000_00
MAX_STOCK = 50
VAT_RATE = 20
# Version number 1 in 1C's НомерВерсии form, base64 of 8 big-endian bytes.
FIRST_VERSION = "AAAAAAAAAAE="

# A 1x1 grey baseline JPEG, built marker by marker so that no imaging library is needed.
TINY_JPEG = b"".join(
    (
        b"\xff\xd8",  # SOI
        # APP0: JFIF 1.1, no thumbnail
        b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
        b"\xff\xdb\x00\x43\x00" + b"\x01" * 64,  # DQT: table 0, all quantizers 1
        # SOF0: 8-bit samples, 1x1 pixels, one component with quantization table 0
        b"\xff\xc0\x00\x0b\x08\x00\x01\x00\x01\x01\x01\x11\x00",
        # DHT: DC table 0 and AC table 0, each with the single 1-bit code "0". In the DC
        # table it means "difference 0", and in the AC table it means end of block.
        b"\xff\xc4\x00\x14\x00\x01" + b"\x00" * 15 + b"\x00",
        b"\xff\xc4\x00\x14\x10\x01" + b"\x00" * 15 + b"\x00",
        b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00",  # SOS: component 1 uses tables 0/0
        b"\x3f",  # scan: DC code 0, AC code 0 (EOB), then six 1-bits of padding
        b"\xff\xd9",  # EOI
    )
)

# Units of measure as (code, short name, full name, international abbreviation). Codes
# follow OKEI, and 1C writes them with a trailing space. As in real exports, some units
# have no international abbreviation, and one full name is padded with spaces to 100
# characters.
UNITS = (
    ("796 ", "шт", "Штука", "PCE"),
    ("715 ", "пар", "пара", ""),
    ("778 ", "упак", f"{'Упаковка':<100}", ""),
    ("166 ", "кг", "Килограмм", "KGM"),
)
PIECE_UNIT = "796 "
PAIR_UNIT = "715 "

PRICE_TYPE_NAMES = ("Розничная", "Опт 1", "Опт 2", "Опт 3")
# Price of each price type in percent of the retail price, in PRICE_TYPE_NAMES order.
PRICE_TYPE_PERCENTS = (100, 95, 90, 85)
WAREHOUSE_NAMES = ("Основной склад", "Склад Москва", "Склад Санкт-Петербург")

SPORTS = (
    "Бег",
    "Футбол",
    "Хоккей",
    "Плавание",
    "Велоспорт",
    "Туризм",
    "Фитнес",
    "Единоборства",
    "Теннис",
    "Лыжный спорт",
    "Баскетбол",
    "Волейбол",
)
SECTIONS = (
    "Обувь",
    "Одежда",
    "Инвентарь",
    "Аксессуары & запчасти",
    "Защита",
    "Сумки и рюкзаки",
)
AUDIENCES = ("Мужская", "Женская", "Детская", "Для профессионалов", "Распродажа")

BRANDS = (
    "Альпина Спорт",
    "Вектор",
    "Северный ветер",
    "Ural Peak",
    "Forza",
    "Nordkamm",
    "Атлет",
    "Sportline",
    "Kraft & Kraft",
    "Tempo",
    "Байкал",
    "Orion",
    "Stayer",
    "Кедр",
    "Velox",
    "Арктика",
    "Dynamo Pro",
    "Marathon",
    "Эверест",
    "Zenit Gear",
)
MATERIALS = (
    "Хлопок",
    "Полиэстер",
    "Нейлон",
    "Натуральная кожа",
    "Искусственная кожа",
    "Резина",
    "Алюминий",
    "Сталь",
    "Неопрен",
    "Мембрана",
)
# "Унисекс " keeps the trailing space that real 1C dictionary values sometimes have.
GENDERS = ("Мужской", "Женский", "Унисекс ", "Детский")
MODEL_NAMES = (
    "Pro",
    "Lite",
    "Air",
    "Max",
    "Junior",
    "Team",
    '"Спорт & Отдых"',
    "<Limited>",
)

# The values below go into goods and offers files unescaped, so they must not contain
# "&", "<" or ">". Articles, ids and numbers are generated without those characters too.
COUNTRIES = ("Россия", "Китай", "Вьетнам", "Турция", "Германия", "Беларусь")
CLOTHING_SIZES = ("XS", "S", "M", "L", "XL", "XXL", "3XL")
SHOE_SIZES = tuple(str(size) for size in range(36, 47))
COLORS = (
    "Черный",
    "Белый",
    "Красный",
    "Синий",
    "Зеленый",
    "Серый",
    "Желтый",
    "Оранжевый",
)
# Weights of dumbbells and kettlebells, which 1C prints with a decimal comma.
WEIGHTS = ("1,5", "2,5", "5", "8", "10", "16", "21,6", "24", "32")
WEIGHT_CHARACTERISTIC = "Вес, кг"
# Every characteristic offer also has a box weight. 1C writes "-999 999 999,9" for a
# number without a value, and some offers have an empty <Значение/> instead.
BOX_WEIGHTS = ("", "0,5", "2,16", "21,6", "-999 999 999,9")
BOX_WEIGHT_CHARACTERISTIC = "Вес коробки (кг)"


@dataclass(frozen=True, slots=True)
class _Kind:
    """Kind of good: the start of its name, how its offers differ, and its unit."""

    name: str
    scheme: str  # "clothing", "shoe", "weight" or "color"
    unit: str


KINDS = (
    _Kind("Кроссовки беговые", "shoe", PAIR_UNIT),
    _Kind("Бутсы футбольные", "shoe", PAIR_UNIT),
    _Kind("Ботинки треккинговые", "shoe", PIECE_UNIT),
    _Kind("Футболка спортивная", "clothing", PIECE_UNIT),
    _Kind("Куртка горнолыжная", "clothing", PIECE_UNIT),
    _Kind("Костюм спортивный", "clothing", PIECE_UNIT),
    _Kind("Шорты беговые", "clothing", PIECE_UNIT),
    _Kind("Гантель разборная", "weight", PIECE_UNIT),
    _Kind("Гиря чугунная", "weight", PIECE_UNIT),
    _Kind("Мяч футбольный", "color", PIECE_UNIT),
    _Kind("Рюкзак туристический", "color", PIECE_UNIT),
    _Kind("Коврик для йоги", "color", PIECE_UNIT),
    _Kind("Бутылка для воды", "color", PIECE_UNIT),
)


@dataclass(frozen=True)
class SampleSummary:
    """Exact counts of the elements that write_sample_package wrote."""

    groups: int
    # Свойство elements in propertiesGoods and propertiesOffers together.
    properties: int
    # Dictionary values (ВариантыЗначений/Справочник) in both properties files.
    property_values: int
    price_types: int
    warehouses: int
    units: int
    goods: int
    # Characteristic offers plus one default offer, keyed by the bare good id, for
    # every good without characteristics. Prices and rests files list all of them.
    offers: int
    # Offers with characteristics, the only offers that the offers files contain.
    characteristic_offers: int
    prices: int
    stock_rows: int
    pictures: int
    # XML files in import order: classifier files, then goods, offers, prices and rests
    # segments. The pictures are not listed, so the list stays small for big packages.
    files: list[Path]


@dataclass(slots=True)
class _Group:
    id: str
    version: str
    name: str
    children: list[_Group]


@dataclass(frozen=True, slots=True)
class _Property:
    id: str
    version: str
    name: str
    value_type: str  # "Справочник" (dictionary) or "Строка" (free text)
    values: tuple[tuple[str, str], ...]  # (value id, text) pairs of a dictionary

    def value_ids_by_text(self) -> dict[str, str]:
        return {text: value_id for value_id, text in self.values}


@dataclass(frozen=True, slots=True)
class _Reference:
    """Classifier data that the goods and offers refer to by id."""

    # Real 1C exports use one id for the catalog and the classifier. Distinct ids here
    # catch an importer that mixes the two up.
    catalog_id: str
    classifier_id: str
    top_groups: list[_Group]
    group_count: int
    leaf_group_ids: list[str]
    brand: _Property
    material: _Property
    gender: _Property
    country: _Property
    size: _Property
    color: _Property
    price_types: tuple[tuple[str, str, str], ...]  # (id, version, name)
    warehouses: tuple[tuple[str, str, str], ...]  # (id, version, name)

    @property
    def goods_properties(self) -> tuple[_Property, ...]:
        return (self.brand, self.material, self.gender, self.country)

    @property
    def offer_properties(self) -> tuple[_Property, ...]:
        return (self.size, self.color)


@dataclass(slots=True)
class _Offer:
    id: str
    version: str
    name: str
    characteristics: list[tuple[str, str]]  # (name, value)
    property_values: list[tuple[str, str]]  # (property id, dictionary value id)
    prices: list[int]  # kopecks, one per price type
    price_style: int  # index into _PRICE_FORMATTERS
    quantities: list[str]  # one per warehouse, as written


@dataclass(slots=True)
class _Good:
    id: str
    version: str
    barcode: str
    article: str
    name: str
    unit: str
    group_id: str
    description: str
    pictures: list[str]  # paths relative to the package folder
    property_values: list[tuple[str, str]]  # (property id, value or "")
    has_characteristics: bool
    # Characteristic offers, or the single default offer whose id is the good id.
    offers: list[_Offer]


@dataclass(slots=True)
class _Totals:
    goods: int = 0
    offers: int = 0
    characteristic_offers: int = 0
    prices: int = 0
    stock_rows: int = 0
    pictures: int = 0


def write_sample_package(
    outdir: Path, goods: int, *, seed: int = 1, goods_per_file: int = 5000
) -> SampleSummary:
    """Write a segmented CommerceML 3.1 package with ``goods`` goods into ``outdir``.

    Each segment n contains ``goods_per_file`` goods (the last one the rest) in
    ``goods_1_<n>_<uuid>.xml`` and their offers in ``offers_``, ``prices_`` and
    ``rests_1_<n>_<uuid>.xml``. The same arguments produce byte-identical files.
    ``outdir`` is created if missing and must be empty, so that files of an earlier
    package cannot mix with this one.

    Goods get 0.55 pictures on average, each written as its own file, so for big
    packages the file system's file creation rate limits the speed.

    Raises ValueError for a negative ``goods`` or a ``goods_per_file`` below 1, and
    FileExistsError if ``outdir`` is not empty.
    """
    if goods < 0:
        raise ValueError(f"goods must be 0 or more, got {goods}")
    if goods_per_file < 1:
        raise ValueError(f"goods_per_file must be 1 or more, got {goods_per_file}")
    outdir.mkdir(parents=True, exist_ok=True)
    if any(outdir.iterdir()):
        raise FileExistsError(
            f"Output folder {outdir} is not empty. Remove its contents or pass "
            "a new folder."
        )

    rng = random.Random(seed)
    reference = _create_reference(rng, goods)
    classifier_files = _write_classifier_files(outdir, rng, reference)

    totals = _Totals()
    segment_files: list[tuple[Path, Path, Path, Path]] = []
    factory = _GoodFactory(rng, reference)
    pictures = _PictureWriter(outdir)
    for first in range(0, goods, goods_per_file):
        count = min(goods_per_file, goods - first)
        segment_number = len(segment_files) + 1
        segment_files.append(
            _write_segment(
                outdir, rng, reference, factory, pictures, segment_number, count, totals
            )
        )

    # List segment files by kind, so that all goods files come before all offers files.
    files = list(classifier_files)
    for kind_index in range(4):
        files.extend(segment[kind_index] for segment in segment_files)

    properties = reference.goods_properties + reference.offer_properties
    return SampleSummary(
        groups=reference.group_count,
        properties=len(properties),
        property_values=sum(len(prop.values) for prop in properties),
        price_types=len(reference.price_types),
        warehouses=len(reference.warehouses),
        units=len(UNITS),
        goods=totals.goods,
        offers=totals.offers,
        characteristic_offers=totals.characteristic_offers,
        prices=totals.prices,
        stock_rows=totals.stock_rows,
        pictures=totals.pictures,
        files=files,
    )


def _new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _new_version(rng: random.Random) -> str:
    """Return a random НомерВерсии value in 1C's form, base64 of 8 bytes."""
    return base64.b64encode(rng.getrandbits(64).to_bytes(8, "big")).decode("ascii")


def _numbered_name(names: tuple[str, ...], index: int) -> str:
    """Return names[index], or the name plus its cycle ("Бег 2") once names run out."""
    name = names[index % len(names)]
    if index < len(names):
        return name
    return f"{name} {index // len(names) + 1}"


# Reference data


def _create_reference(rng: random.Random, goods: int) -> _Reference:
    catalog_id = _new_uuid(rng)
    classifier_id = _new_uuid(rng)
    group_count = min(MAX_GROUPS, max(MIN_GROUPS, goods // GOODS_PER_GROUP))
    top_groups, leaf_group_ids = _create_groups(rng, group_count)
    return _Reference(
        catalog_id=catalog_id,
        classifier_id=classifier_id,
        top_groups=top_groups,
        group_count=group_count,
        leaf_group_ids=leaf_group_ids,
        brand=_create_property(rng, "Бренд", BRANDS),
        material=_create_property(rng, "Материал", MATERIALS),
        gender=_create_property(rng, "Пол", GENDERS),
        country=_create_property(rng, "Страна", ()),
        size=_create_property(rng, "Размер", CLOTHING_SIZES + SHOE_SIZES),
        color=_create_property(rng, "Цвет", COLORS),
        price_types=tuple(
            (_new_uuid(rng), _new_version(rng), name) for name in PRICE_TYPE_NAMES
        ),
        warehouses=tuple(
            (_new_uuid(rng), _new_version(rng), name) for name in WAREHOUSE_NAMES
        ),
    )


def _create_groups(rng: random.Random, total: int) -> tuple[list[_Group], list[str]]:
    """Create a three-level tree of ``total`` groups and return its roots and leaf ids.

    About 4% of the groups are top level and 20% second level. The first groups of
    each lower level go one to each parent and the rest pick random parents. So every
    first- and second-level group has children, and the leaves are the third level.
    """
    top_count = max(2, total // 25)
    middle_count = max(3, total // 5)
    bottom_count = total - top_count - middle_count

    top = [_Group(_new_uuid(rng), _new_version(rng), "", []) for _ in range(top_count)]
    middle = _attach_children(rng, top, middle_count)
    bottom = _attach_children(rng, middle, bottom_count)

    for index, group in enumerate(top):
        group.name = _numbered_name(SPORTS, index)
    for group in top:
        for index, child in enumerate(group.children):
            child.name = _numbered_name(SECTIONS, index)
    for group in middle:
        for index, child in enumerate(group.children):
            child.name = _numbered_name(AUDIENCES, index)
    return top, [group.id for group in bottom]


def _attach_children(
    rng: random.Random, parents: list[_Group], count: int
) -> list[_Group]:
    children = []
    for index in range(count):
        child = _Group(_new_uuid(rng), _new_version(rng), "", [])
        if index < len(parents):
            parent = parents[index]
        else:
            parent = rng.choice(parents)
        parent.children.append(child)
        children.append(child)
    return children


def _create_property(
    rng: random.Random, name: str, texts: tuple[str, ...]
) -> _Property:
    """Create a dictionary property with ``texts`` as values, or a string property."""
    property_id = _new_uuid(rng)
    version = _new_version(rng)
    values = tuple((_new_uuid(rng), text) for text in texts)
    value_type = "Справочник" if texts else "Строка"
    return _Property(property_id, version, name, value_type, values)


# File envelopes


class _XmlOutput:
    """Binary file handle that takes text and writes it as UTF-8.

    Encoding each chunk and writing bytes is about twice as fast as a text-mode handle
    (measured on CPython 3.11 with 4 KB chunks of Cyrillic markup).
    """

    __slots__ = ("_handle",)

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle

    def write(self, text: str) -> None:
        self._handle.write(text.encode())


@contextmanager
def _package_file(path: Path, *, bom: bool) -> Iterator[_XmlOutput]:
    """Open ``path`` for writing between the XML declaration and the root element."""
    with path.open("wb", buffering=1 << 20) as handle:
        output = _XmlOutput(handle)
        if bom:
            handle.write(codecs.BOM_UTF8)
        output.write(XML_DECLARATION + ROOT_START)
        yield output
        output.write(ROOT_END)


def _catalog_start(reference: _Reference) -> str:
    return (
        '\t<Каталог СодержитТолькоИзменения="false">\n'
        f"\t\t<Ид>{reference.catalog_id}</Ид>\n"
        f"\t\t<ИдКлассификатора>{reference.classifier_id}</ИдКлассификатора>\n"
        f"\t\t<Наименование>{CATALOG_NAME}</Наименование>\n"
    )


def _offer_package_start(reference: _Reference) -> str:
    # 1C writes the package id as "#" followed by the catalog id.
    return (
        '\t<ПакетПредложений СодержитТолькоИзменения="false">\n'
        f"\t\t<Ид>#{reference.catalog_id}</Ид>\n"
        f"\t\t<Наименование>{OFFER_PACKAGE_NAME}</Наименование>\n"
        f"\t\t<ИдКаталога>{reference.catalog_id}</ИдКаталога>\n"
        f"\t\t<ИдКлассификатора>{reference.classifier_id}</ИдКлассификатора>\n"
    )


@contextmanager
def _classifier_file(
    path: Path, reference: _Reference, *, for_offers: bool = False
) -> Iterator[_XmlOutput]:
    """Open a classifier file for writing inside its <Классификатор> element.

    1C puts an empty catalog envelope before the classifier, or an empty offer package
    envelope in the file of offer properties.
    """
    with _package_file(path, bom=True) as handle:
        if for_offers:
            handle.write(_offer_package_start(reference) + "\t</ПакетПредложений>\n")
        else:
            handle.write(
                _catalog_start(reference)
                + f"\t\t<Описание>{CATALOG_NAME}</Описание>\n\t</Каталог>\n"
            )
        handle.write(
            '\t<Классификатор СодержитТолькоИзменения="false">\n'
            f"\t\t<Ид>{reference.classifier_id}</Ид>\n"
            f"\t\t<Наименование>{CATALOG_NAME}</Наименование>\n"
        )
        yield handle
        handle.write("\t</Классификатор>\n")


# Classifier files


def _write_classifier_files(
    outdir: Path, rng: random.Random, reference: _Reference
) -> list[Path]:
    groups_path = outdir / "groups.xml"
    goods_properties_path = outdir / f"propertiesGoods_1_1_{_new_uuid(rng)}.xml"
    offer_properties_path = outdir / f"propertiesOffers_1_1_{_new_uuid(rng)}.xml"
    price_types_path = outdir / "priceLists.xml"
    warehouses_path = outdir / "storages.xml"
    units_path = outdir / "units.xml"

    with _classifier_file(groups_path, reference) as handle:
        handle.write("\t\t<Группы>\n")
        for group in reference.top_groups:
            _write_group(handle, group, 3)
        handle.write("\t\t</Группы>\n")

    with _classifier_file(goods_properties_path, reference) as handle:
        _write_properties(handle, reference.goods_properties)

    with _classifier_file(offer_properties_path, reference, for_offers=True) as handle:
        _write_properties(handle, reference.offer_properties)

    with _classifier_file(price_types_path, reference) as handle:
        _write_price_types(handle, reference)

    with _classifier_file(warehouses_path, reference) as handle:
        _write_warehouses(handle, reference)

    with _classifier_file(units_path, reference) as handle:
        _write_units(handle)

    return [
        groups_path,
        goods_properties_path,
        offer_properties_path,
        price_types_path,
        warehouses_path,
        units_path,
    ]


def _write_group(handle: _XmlOutput, group: _Group, depth: int) -> None:
    indent = "\t" * depth
    handle.write(
        f"{indent}<Группа>\n"
        f"{indent}\t<Ид>{group.id}</Ид>\n"
        f"{indent}\t<НомерВерсии>{group.version}</НомерВерсии>\n"
        f"{indent}\t<ПометкаУдаления>false</ПометкаУдаления>\n"
        f"{indent}\t<Наименование>{escape(group.name)}</Наименование>\n"
    )
    if group.children:
        handle.write(f"{indent}\t<Группы>\n")
        for child in group.children:
            _write_group(handle, child, depth + 2)
        handle.write(f"{indent}\t</Группы>\n")
    handle.write(f"{indent}</Группа>\n")


def _write_properties(handle: _XmlOutput, properties: tuple[_Property, ...]) -> None:
    handle.write("\t\t<Свойства>\n")
    for prop in properties:
        handle.write(
            "\t\t\t<Свойство>\n"
            f"\t\t\t\t<Ид>{prop.id}</Ид>\n"
            f"\t\t\t\t<Наименование>{escape(prop.name)}</Наименование>\n"
            f"\t\t\t\t<НомерВерсии>{prop.version}</НомерВерсии>\n"
            "\t\t\t\t<ПометкаУдаления>false</ПометкаУдаления>\n"
            "\t\t\t\t<Внешний>false</Внешний>\n"
            "\t\t\t\t<Информационное>true</Информационное>\n"
            f"\t\t\t\t<ТипЗначений>{prop.value_type}</ТипЗначений>\n"
        )
        if prop.values:
            handle.write("\t\t\t\t<ВариантыЗначений>\n")
            for value_id, text in prop.values:
                handle.write(
                    "\t\t\t\t\t<Справочник>\n"
                    f"\t\t\t\t\t\t<ИдЗначения>{value_id}</ИдЗначения>\n"
                    f"\t\t\t\t\t\t<Значение>{escape(text)}</Значение>\n"
                    "\t\t\t\t\t</Справочник>\n"
                )
            handle.write("\t\t\t\t</ВариантыЗначений>\n")
        handle.write("\t\t\t</Свойство>\n")
    handle.write("\t\t</Свойства>\n")


def _write_price_types(handle: _XmlOutput, reference: _Reference) -> None:
    handle.write("\t\t<ТипыЦен>\n")
    for price_type_id, version, name in reference.price_types:
        handle.write(
            "\t\t\t<ТипЦены>\n"
            f"\t\t\t\t<Ид>{price_type_id}</Ид>\n"
            f"\t\t\t\t<НомерВерсии>{version}</НомерВерсии>\n"
            "\t\t\t\t<ПометкаУдаления>false</ПометкаУдаления>\n"
            f"\t\t\t\t<Наименование>{escape(name)}</Наименование>\n"
            "\t\t\t\t<Валюта>RUB</Валюта>\n"
            "\t\t\t\t<Налог>\n"
            "\t\t\t\t\t<Наименование>НДС</Наименование>\n"
            "\t\t\t\t\t<УчтеноВСумме>true</УчтеноВСумме>\n"
            "\t\t\t\t\t<Акциз>false</Акциз>\n"
            "\t\t\t\t</Налог>\n"
            "\t\t\t</ТипЦены>\n"
        )
    handle.write("\t\t</ТипыЦен>\n")


def _write_warehouses(handle: _XmlOutput, reference: _Reference) -> None:
    handle.write("\t\t<Склады>\n")
    for warehouse_id, version, name in reference.warehouses:
        handle.write(
            "\t\t\t<Склад>\n"
            f"\t\t\t\t<Ид>{warehouse_id}</Ид>\n"
            f"\t\t\t\t<НомерВерсии>{version}</НомерВерсии>\n"
            "\t\t\t\t<ПометкаУдаления>false</ПометкаУдаления>\n"
            f"\t\t\t\t<Наименование>{escape(name)}</Наименование>\n"
            "\t\t\t</Склад>\n"
        )
    handle.write("\t\t</Склады>\n")


def _write_units(handle: _XmlOutput) -> None:
    handle.write("\t\t<ЕдиницыИзмерения>\n")
    for code, short_name, full_name, international in UNITS:
        handle.write(
            "\t\t\t<ЕдиницаИзмерения>\n"
            f"\t\t\t\t<Ид>{code}</Ид>\n"
            f"\t\t\t\t<НомерВерсии>{FIRST_VERSION}</НомерВерсии>\n"
            "\t\t\t\t<ПометкаУдаления>false</ПометкаУдаления>\n"
            f"\t\t\t\t<НаименованиеКраткое>{short_name}</НаименованиеКраткое>\n"
            f"\t\t\t\t<Код>{code}</Код>\n"
            f"\t\t\t\t<НаименованиеПолное>{escape(full_name)}</НаименованиеПолное>\n"
            + _element("\t\t\t\t", "МеждународноеСокращение", international)
            + "\t\t\t</ЕдиницаИзмерения>\n"
        )
    handle.write("\t\t</ЕдиницыИзмерения>\n")


# Goods and offers


class _GoodFactory:
    """Draws goods with their offers, prices and stock from the shared generator."""

    def __init__(self, rng: random.Random, reference: _Reference) -> None:
        self._rng = rng
        self._reference = reference
        self._size_ids = reference.size.value_ids_by_text()
        self._color_ids = reference.color.value_ids_by_text()
        self._next_article_number = 1
        self._previous_article = ""

    def create(self) -> _Good:
        rng = self._rng
        reference = self._reference
        good_id = _new_uuid(rng)
        version = _new_version(rng)
        barcode = self._draw_barcode()
        article = self._draw_article()

        kind = KINDS[int(rng.random() * len(KINDS))]
        brand_index = int(rng.random() * len(BRANDS))
        material_index = int(rng.random() * len(MATERIALS))
        model = MODEL_NAMES[int(rng.random() * len(MODEL_NAMES))]
        name = (
            f"{kind.name} {BRANDS[brand_index]} {model} {100 + int(rng.random() * 900)}"
        )
        group_id = reference.leaf_group_ids[
            int(rng.random() * len(reference.leaf_group_ids))
        ]

        if rng.random() < EMPTY_DESCRIPTION_SHARE:
            description = ""
        else:
            description = (
                f"{name}.<br>Материал: {MATERIALS[material_index]}.<br>"
                "Подходит для тренировок и соревнований."
            )

        pictures = self._draw_pictures(good_id)
        property_values = [
            (
                reference.brand.id,
                self._draw_dictionary_value(reference.brand, brand_index),
            ),
            (
                reference.material.id,
                self._draw_dictionary_value(reference.material, material_index),
            ),
            (reference.gender.id, self._draw_dictionary_value(reference.gender, None)),
            (reference.country.id, self._draw_country()),
        ]

        has_characteristics = rng.random() < CHARACTERISTICS_SHARE
        if has_characteristics:
            offers = self._draw_characteristic_offers(good_id, name, kind.scheme)
        else:
            offers = [self._draw_offer(good_id, "", name, [], [])]
        return _Good(
            id=good_id,
            version=version,
            barcode=barcode,
            article=article,
            name=name,
            unit=kind.unit,
            group_id=group_id,
            description=description,
            pictures=pictures,
            property_values=property_values,
            has_characteristics=has_characteristics,
            offers=offers,
        )

    def _draw_barcode(self) -> str:
        """Return "" or an EAN-13 with a Russian GS1 prefix and a valid check digit."""
        rng = self._rng
        if rng.random() >= BARCODE_SHARE:
            return ""
        body = f"460{rng.getrandbits(30) % 1_000_000_000:09d}"
        odd_sum = sum(int(digit) for digit in body[0::2])
        even_sum = sum(int(digit) for digit in body[1::2])
        check = (10 - (odd_sum + 3 * even_sum) % 10) % 10
        return f"{body}{check}"

    def _draw_article(self) -> str:
        """Return "", the previous good's article (once per pair) or a new article."""
        roll = self._rng.random()
        if roll < EMPTY_ARTICLE_SHARE:
            return ""
        if roll < EMPTY_ARTICLE_SHARE + SHARED_ARTICLE_SHARE and self._previous_article:
            article = self._previous_article
            self._previous_article = ""
            return article
        article = f"SG-{self._next_article_number:06d}"
        self._next_article_number += 1
        self._previous_article = article
        return article

    def _draw_pictures(self, good_id: str) -> list[str]:
        rng = self._rng
        roll = rng.random()
        if roll < NO_PICTURE_SHARE:
            return []
        count = 2 if roll >= 1 - TWO_PICTURES_SHARE else 1
        folder = f"{PICTURES_DIR}/{good_id[:2]}"
        return [f"{folder}/{good_id}_{_new_uuid(rng)}.jpg" for _ in range(count)]

    def _draw_dictionary_value(self, prop: _Property, index: int | None) -> str:
        """Return the id of value ``index`` (a random one if None), or an empty value.

        An empty value is either "" or the all-zero uuid, both of which 1C writes for
        a property without a value.
        """
        roll = self._rng.random()
        if roll < EMPTY_VALUE_SHARE:
            return ""
        if roll < EMPTY_VALUE_SHARE + ZERO_VALUE_SHARE:
            return ZERO_UUID
        if index is None:
            index = int(self._rng.random() * len(prop.values))
        return prop.values[index][0]

    def _draw_country(self) -> str:
        rng = self._rng
        if rng.random() < EMPTY_COUNTRY_SHARE:
            return ""
        return COUNTRIES[int(rng.random() * len(COUNTRIES))]

    def _draw_characteristic_offers(
        self, good_id: str, name: str, scheme: str
    ) -> list[_Offer]:
        """Draw 2 to 4 offers that differ in the size, color or weight of ``scheme``."""
        rng = self._rng
        count = rng.randint(MIN_CHARACTERISTIC_OFFERS, MAX_CHARACTERISTIC_OFFERS)
        size_property = self._reference.size.id
        color_property = self._reference.color.id
        offers = []
        if scheme == "weight":
            for weight in rng.sample(WEIGHTS, count):
                characteristics = [(WEIGHT_CHARACTERISTIC, weight)]
                offers.append(
                    self._draw_offer(good_id, weight, name, characteristics, [])
                )
        elif scheme == "color":
            for color in rng.sample(COLORS, count):
                characteristics = [("Цвет", color)]
                values = [(color_property, self._color_ids[color])]
                offers.append(
                    self._draw_offer(good_id, color, name, characteristics, values)
                )
        else:
            sizes = CLOTHING_SIZES if scheme == "clothing" else SHOE_SIZES
            color = (
                COLORS[int(rng.random() * len(COLORS))] if rng.random() < 0.5 else ""
            )
            for size in rng.sample(sizes, count):
                characteristics = [("Размер", size)]
                values = [(size_property, self._size_ids[size])]
                label = size
                if color:
                    characteristics.append(("Цвет", color))
                    values.append((color_property, self._color_ids[color]))
                    label = f"{size}, {color}"
                offers.append(
                    self._draw_offer(good_id, label, name, characteristics, values)
                )
        return offers

    def _draw_offer(
        self,
        good_id: str,
        label: str,
        name: str,
        characteristics: list[tuple[str, str]],
        property_values: list[tuple[str, str]],
    ) -> _Offer:
        """Draw a characteristic offer if ``label`` is set, else the default offer.

        A characteristic offer gets its own id after "#", a version, the label in its
        name and the box weight characteristic.
        """
        rng = self._rng
        if label:
            offer_id = f"{good_id}#{_new_uuid(rng)}"
            version = _new_version(rng)
            name = f"{name} ({label})"
            box_weight = BOX_WEIGHTS[int(rng.random() * len(BOX_WEIGHTS))]
            characteristics.append((BOX_WEIGHT_CHARACTERISTIC, box_weight))
        else:
            offer_id = good_id
            version = ""

        retail = MIN_PRICE_KOPECKS + int(
            rng.random() ** 3 * (MAX_PRICE_KOPECKS - MIN_PRICE_KOPECKS)
        )
        if rng.random() < 0.5:
            retail -= retail % 100
        prices = [retail * percent // 100 for percent in PRICE_TYPE_PERCENTS]
        price_style = int(rng.random() * len(_PRICE_FORMATTERS))

        quantities = []
        for _ in WAREHOUSE_NAMES:
            roll = rng.random()
            stock = 1 + int(rng.random() * MAX_STOCK)
            if roll < ZERO_STOCK_SHARE:
                quantities.append("0")
            elif roll < ZERO_STOCK_SHARE + DECIMAL_STOCK_SHARE:
                quantities.append(f"{stock},000")
            else:
                quantities.append(str(stock))
        return _Offer(
            offer_id,
            version,
            name,
            characteristics,
            property_values,
            prices,
            price_style,
            quantities,
        )


class _PictureWriter:
    """Writes TINY_JPEG at picture paths, creating each folder once.

    It uses os.open and os.write because a buffered file object per picture takes about
    twice as long (measured on tmpfs with CPython 3.11).
    """

    _FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)

    def __init__(self, outdir: Path) -> None:
        self._outdir = outdir
        self._folders: set[str] = set()

    def write(self, relative_path: str) -> None:
        folder, _, _ = relative_path.rpartition("/")
        if folder not in self._folders:
            (self._outdir / folder).mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        descriptor = os.open(
            os.path.join(self._outdir, relative_path), self._FLAGS, 0o644
        )
        try:
            written = os.write(descriptor, TINY_JPEG)
            if written != len(TINY_JPEG):
                raise OSError(
                    f"Short write of picture {relative_path}: {written} bytes"
                )
        finally:
            os.close(descriptor)


def _write_segment(
    outdir: Path,
    rng: random.Random,
    reference: _Reference,
    factory: _GoodFactory,
    pictures: _PictureWriter,
    number: int,
    count: int,
    totals: _Totals,
) -> tuple[Path, Path, Path, Path]:
    """Write segment ``number`` with ``count`` new goods and their offers and stock.

    Returns the paths of the goods, offers, prices and rests files of the segment.
    """
    paths = (
        outdir / f"goods_1_{number}_{_new_uuid(rng)}.xml",
        outdir / f"offers_1_{number}_{_new_uuid(rng)}.xml",
        outdir / f"prices_1_{number}_{_new_uuid(rng)}.xml",
        outdir / f"rests_1_{number}_{_new_uuid(rng)}.xml",
    )
    package_start = _offer_package_start(reference) + "\t\t<Предложения>\n"
    package_end = "\t\t</Предложения>\n\t</ПакетПредложений>\n"
    price_type_ids = [price_type_id for price_type_id, _, _ in reference.price_types]
    warehouse_ids = [warehouse_id for warehouse_id, _, _ in reference.warehouses]

    with ExitStack() as stack:
        # 1C writes a BOM on every file of the package except the goods files.
        goods_file = stack.enter_context(_package_file(paths[0], bom=False))
        offers_file = stack.enter_context(_package_file(paths[1], bom=True))
        prices_file = stack.enter_context(_package_file(paths[2], bom=True))
        rests_file = stack.enter_context(_package_file(paths[3], bom=True))
        goods_file.write(_catalog_start(reference) + "\t\t<Товары>\n")
        for handle in (offers_file, prices_file, rests_file):
            handle.write(package_start)

        for _ in range(count):
            good = factory.create()
            goods_file.write(_render_good(good))
            for relative_path in good.pictures:
                pictures.write(relative_path)
            offers = good.offers
            if good.has_characteristics:
                offers_file.write("".join([_render_offer(offer) for offer in offers]))
            prices_file.write(
                "".join([_render_prices(offer, price_type_ids) for offer in offers])
            )
            rests_file.write(
                "".join([_render_rests(offer, warehouse_ids) for offer in offers])
            )

            offer_count = len(offers)
            totals.goods += 1
            totals.offers += offer_count
            if good.has_characteristics:
                totals.characteristic_offers += offer_count
            totals.prices += offer_count * len(price_type_ids)
            totals.stock_rows += offer_count * len(warehouse_ids)
            totals.pictures += len(good.pictures)

        goods_file.write(
            f"\t\t</Товары>\n\t\t<Описание>{CATALOG_NAME}</Описание>\n\t</Каталог>\n"
        )
        for handle in (offers_file, prices_file, rests_file):
            handle.write(package_end)
    return paths


# Rendering of single goods and offers


def _render_good(good: _Good) -> str:
    name = escape(good.name)
    parts = [
        "\t\t\t<Товар>\n"
        f"\t\t\t\t<Ид>{good.id}</Ид>\n"
        f"\t\t\t\t<НомерВерсии>{good.version}</НомерВерсии>\n"
        "\t\t\t\t<ПометкаУдаления>false</ПометкаУдаления>\n",
        _element("\t\t\t\t", "Штрихкод", good.barcode),
        _element("\t\t\t\t", "Артикул", good.article),
        f"\t\t\t\t<Наименование>{name}</Наименование>\n"
        f"\t\t\t\t<БазоваяЕдиница>{good.unit}</БазоваяЕдиница>\n"
        f"\t\t\t\t<Группы>\n\t\t\t\t\t<Ид>{good.group_id}</Ид>\n\t\t\t\t</Группы>\n",
        _element("\t\t\t\t", "Описание", escape(good.description)),
    ]
    for picture in good.pictures:
        parts.append(f"\t\t\t\t<Картинка>{picture}</Картинка>\n")

    parts.append("\t\t\t\t<ЗначенияСвойств>\n")
    for property_id, value in good.property_values:
        parts.append(
            "\t\t\t\t\t<ЗначенияСвойства>\n"
            f"\t\t\t\t\t\t<Ид>{property_id}</Ид>\n"
            + _element("\t\t\t\t\t\t", "Значение", value)
            + "\t\t\t\t\t</ЗначенияСвойства>\n"
        )
    parts.append(
        "\t\t\t\t</ЗначенияСвойств>\n"
        "\t\t\t\t<СтавкиНалогов>\n"
        "\t\t\t\t\t<СтавкаНалога>\n"
        "\t\t\t\t\t\t<Наименование>НДС</Наименование>\n"
        f"\t\t\t\t\t\t<Ставка>{VAT_RATE}</Ставка>\n"
        "\t\t\t\t\t</СтавкаНалога>\n"
        "\t\t\t\t</СтавкиНалогов>\n"
        "\t\t\t\t<ЗначенияРеквизитов>\n"
        "\t\t\t\t\t<ЗначениеРеквизита>\n"
        "\t\t\t\t\t\t<Наименование>ВидНоменклатуры</Наименование>\n"
        "\t\t\t\t\t\t<Значение>Товар</Значение>\n"
        "\t\t\t\t\t</ЗначениеРеквизита>\n"
        "\t\t\t\t\t<ЗначениеРеквизита>\n"
        "\t\t\t\t\t\t<Наименование>ТипНоменклатуры</Наименование>\n"
        "\t\t\t\t\t\t<Значение>Товар</Значение>\n"
        "\t\t\t\t\t</ЗначениеРеквизита>\n"
        "\t\t\t\t\t<ЗначениеРеквизита>\n"
        "\t\t\t\t\t\t<Наименование>Полное наименование</Наименование>\n"
        f"\t\t\t\t\t\t<Значение>{name}</Значение>\n"
        "\t\t\t\t\t</ЗначениеРеквизита>\n"
    )
    # 1C describes each picture again as "<path>#<title>", which is not a picture path.
    for picture in good.pictures:
        parts.append(
            "\t\t\t\t\t<ЗначениеРеквизита>\n"
            "\t\t\t\t\t\t<Наименование>ОписаниеФайла</Наименование>\n"
            f"\t\t\t\t\t\t<Значение>{picture}#{name}</Значение>\n"
            "\t\t\t\t\t</ЗначениеРеквизита>\n"
        )
    parts.append("\t\t\t\t</ЗначенияРеквизитов>\n\t\t\t</Товар>\n")
    return "".join(parts)


def _render_offer(offer: _Offer) -> str:
    parts = [
        "\t\t\t<Предложение>\n"
        f"\t\t\t\t<Ид>{offer.id}</Ид>\n"
        f"\t\t\t\t<НомерВерсии>{offer.version}</НомерВерсии>\n"
        "\t\t\t\t<ПометкаУдаления>false</ПометкаУдаления>\n"
        f"\t\t\t\t<Наименование>{escape(offer.name)}</Наименование>\n"
        "\t\t\t\t<ХарактеристикиТовара>\n"
    ]
    for characteristic, value in offer.characteristics:
        parts.append(
            "\t\t\t\t\t<ХарактеристикаТовара>\n"
            f"\t\t\t\t\t\t<Наименование>{characteristic}</Наименование>\n"
            + _element("\t\t\t\t\t\t", "Значение", value)
            + "\t\t\t\t\t</ХарактеристикаТовара>\n"
        )
    parts.append("\t\t\t\t</ХарактеристикиТовара>\n")
    if offer.property_values:
        parts.append("\t\t\t\t<ЗначенияСвойств>\n")
        for property_id, value_id in offer.property_values:
            parts.append(
                "\t\t\t\t\t<ЗначенияСвойства>\n"
                f"\t\t\t\t\t\t<Ид>{property_id}</Ид>\n"
                f"\t\t\t\t\t\t<Значение>{value_id}</Значение>\n"
                "\t\t\t\t\t</ЗначенияСвойства>\n"
            )
        parts.append("\t\t\t\t</ЗначенияСвойств>\n")
    parts.append("\t\t\t</Предложение>\n")
    return "".join(parts)


def _render_prices(offer: _Offer, price_type_ids: list[str]) -> str:
    format_price = _PRICE_FORMATTERS[offer.price_style]
    parts = [f"\t\t\t<Предложение>\n\t\t\t\t<Ид>{offer.id}</Ид>\n\t\t\t\t<Цены>\n"]
    for price_type_id, kopecks in zip(price_type_ids, offer.prices, strict=True):
        parts.append(
            "\t\t\t\t\t<Цена>\n"
            f"\t\t\t\t\t\t<Представление>{_format_presentation(kopecks)}</Представление>\n"
            f"\t\t\t\t\t\t<ИдТипаЦены>{price_type_id}</ИдТипаЦены>\n"
            f"\t\t\t\t\t\t<ЦенаЗаЕдиницу>{format_price(kopecks)}</ЦенаЗаЕдиницу>\n"
            "\t\t\t\t\t\t<Валюта>руб</Валюта>\n"
            "\t\t\t\t\t\t<Налог>\n"
            "\t\t\t\t\t\t\t<Наименование>НДС</Наименование>\n"
            "\t\t\t\t\t\t\t<УчтеноВСумме>true</УчтеноВСумме>\n"
            "\t\t\t\t\t\t</Налог>\n"
            "\t\t\t\t\t</Цена>\n"
        )
    parts.append("\t\t\t\t</Цены>\n\t\t\t</Предложение>\n")
    return "".join(parts)


def _render_rests(offer: _Offer, warehouse_ids: list[str]) -> str:
    parts = [f"\t\t\t<Предложение>\n\t\t\t\t<Ид>{offer.id}</Ид>\n\t\t\t\t<Остатки>\n"]
    for warehouse_id, quantity in zip(warehouse_ids, offer.quantities, strict=True):
        parts.append(
            "\t\t\t\t\t<Остаток>\n"
            "\t\t\t\t\t\t<Склад>\n"
            f"\t\t\t\t\t\t\t<Ид>{warehouse_id}</Ид>\n"
            f"\t\t\t\t\t\t\t<Количество>{quantity}</Количество>\n"
            "\t\t\t\t\t\t</Склад>\n"
            "\t\t\t\t\t</Остаток>\n"
        )
    parts.append("\t\t\t\t</Остатки>\n\t\t\t</Предложение>\n")
    return "".join(parts)


def _element(indent: str, tag: str, text: str) -> str:
    """Return a line with the element, self-closed if ``text`` is empty."""
    if text:
        return f"{indent}<{tag}>{text}</{tag}>\n"
    return f"{indent}<{tag}/>\n"


# Price numbers. Amounts are integer kopecks, so no float rounding reaches the text.


def _format_presentation(kopecks: int) -> str:
    """Format 123450 as "1 234,50 руб" and 123400 as "1 234 руб" for Представление.

    1C groups thousands with a no-break space and omits zero kopecks.
    """
    rubles, rest = divmod(kopecks, 100)
    grouped = f"{rubles:,}".replace(",", "\u00a0")
    if rest == 0:
        return f"{grouped} руб"
    return f"{grouped},{rest:02d} руб"


def _format_plain(kopecks: int) -> str:
    """Format 123450 as "1234.5", the XML decimal form without trailing zeros."""
    rubles, rest = divmod(kopecks, 100)
    if rest == 0:
        return str(rubles)
    return f"{rubles}.{rest:02d}".rstrip("0")


def _format_comma(kopecks: int) -> str:
    """Format 123450 as "1234,50"."""
    rubles, rest = divmod(kopecks, 100)
    return f"{rubles},{rest:02d}"


def _format_grouped(kopecks: int, separator: str) -> str:
    """Format 123450 as "1<separator>234,50"."""
    rubles, rest = divmod(kopecks, 100)
    grouped = f"{rubles:,}".replace(",", separator)
    return f"{grouped},{rest:02d}"


# ЦенаЗаЕдиницу formats, one picked per offer. 1C writes the plain form, and the other
# three make an importer prove that it also reads decimal commas and grouped thousands.
_PRICE_FORMATTERS = (
    _format_plain,
    _format_comma,
    lambda kopecks: _format_grouped(kopecks, " "),
    lambda kopecks: _format_grouped(kopecks, "\u00a0"),
)
