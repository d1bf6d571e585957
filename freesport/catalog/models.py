"""The shop's catalogue as 1C describes it.

Every row is keyed by its 1C ``Ид`` (``external_id``), never by ``Артикул``, which 1C
leaves empty or repeats. Rows that 1C marks deleted, or that a full package no
longer contains, are deactivated rather than removed, so local ids survive and
orders keep pointing at them.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

EXTERNAL_ID_LENGTH = 100
NAME_LENGTH = 255
SKU_LENGTH = 100
VALUE_LENGTH = 100


class ExternalModel(models.Model):
    """A row mirrored from 1C: its ``Ид``, deletion mark and import bookkeeping."""

    external_id = models.CharField(
        _("1C id"), max_length=EXTERNAL_ID_LENGTH, unique=True
    )
    is_deleted = models.BooleanField(_("deleted in 1C"), default=False)
    # Digest of the imported fields: a re-import of the same content is "unchanged"
    # and writes nothing but the bookkeeping columns.
    content_hash = models.CharField(max_length=32, default="", editable=False)
    # The exchange session that last contained the row; a full package deactivates
    # the rows it did not contain only after the whole package imported.
    last_seen_session = models.BigIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        name = getattr(self, "name", "")
        return f"{name} ({self.external_id})" if name else self.external_id


class Group(ExternalModel):
    name = models.CharField(_("name"), max_length=NAME_LENGTH)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
    )
    # The parent's 1C id as given; ``parent`` is resolved from it after each file,
    # because iterparse finishes a nested group before its parent.
    parent_external_id = models.CharField(max_length=EXTERNAL_ID_LENGTH, blank=True)

    class Meta:
        verbose_name = _("group")
        verbose_name_plural = _("groups")


class Property(ExternalModel):
    name = models.CharField(_("name"), max_length=NAME_LENGTH)
    value_type = models.CharField(_("value type"), max_length=50, blank=True)
    for_offers = models.BooleanField(_("describes offers"), default=False)

    class Meta:
        verbose_name = _("property")
        verbose_name_plural = _("properties")


class PropertyValue(models.Model):
    """One entry of a property's dictionary (``ВариантыЗначений/Справочник``)."""

    property = models.ForeignKey(
        Property, on_delete=models.CASCADE, related_name="values"
    )
    external_id = models.CharField(_("1C id"), max_length=EXTERNAL_ID_LENGTH)
    value = models.CharField(_("value"), max_length=VALUE_LENGTH)

    class Meta:
        verbose_name = _("property value")
        verbose_name_plural = _("property values")
        constraints = [
            models.UniqueConstraint(
                fields=["property", "external_id"], name="uniq_property_value"
            )
        ]

    def __str__(self) -> str:
        return self.value


class PriceType(ExternalModel):
    name = models.CharField(_("name"), max_length=NAME_LENGTH)
    currency = models.CharField(_("currency"), max_length=10, blank=True)

    class Meta:
        verbose_name = _("price type")
        verbose_name_plural = _("price types")


class Warehouse(ExternalModel):
    name = models.CharField(_("name"), max_length=NAME_LENGTH)

    class Meta:
        verbose_name = _("warehouse")
        verbose_name_plural = _("warehouses")


class Unit(ExternalModel):
    name = models.CharField(_("short name"), max_length=50)
    full_name = models.CharField(_("full name"), max_length=NAME_LENGTH, blank=True)

    class Meta:
        verbose_name = _("unit")
        verbose_name_plural = _("units")


class Product(ExternalModel):
    name = models.CharField(_("name"), max_length=NAME_LENGTH)
    sku = models.CharField(
        _("article"), max_length=SKU_LENGTH, blank=True, db_index=True
    )
    barcode = models.CharField(_("barcode"), max_length=50, blank=True)
    description = models.TextField(_("description"), blank=True)
    group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="products"
    )
    group_external_id = models.CharField(max_length=EXTERNAL_ID_LENGTH, blank=True)
    unit_code = models.CharField(_("base unit"), max_length=20, blank=True)
    # Property 1C id -> value as given (a dictionary value id or plain text).
    properties = models.JSONField(_("property values"), default=dict, blank=True)
    is_active = models.BooleanField(_("active"), default=True, db_index=True)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")


class Offer(ExternalModel):
    """A sellable variant: ``product#characteristic``, or the product's own id."""

    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="offers"
    )
    name = models.CharField(_("name"), max_length=NAME_LENGTH, blank=True)
    sku = models.CharField(_("article"), max_length=SKU_LENGTH, blank=True)
    # [[name, value], ...] from ``ХарактеристикиТовара``; each value fits VALUE_LENGTH.
    characteristics = models.JSONField(_("characteristics"), default=list, blank=True)
    # ``Количество`` given on the offer itself, without a warehouse.
    quantity = models.DecimalField(
        _("quantity"), max_digits=15, decimal_places=3, null=True, blank=True
    )
    is_active = models.BooleanField(_("active"), default=True, db_index=True)

    class Meta:
        verbose_name = _("offer")
        verbose_name_plural = _("offers")

    @property
    def is_default(self) -> bool:
        return "#" not in self.external_id


class Price(models.Model):
    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="prices")
    price_type = models.ForeignKey(
        PriceType, on_delete=models.CASCADE, related_name="+"
    )
    value = models.DecimalField(_("price per unit"), max_digits=14, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=10, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("price")
        verbose_name_plural = _("prices")
        constraints = [
            models.UniqueConstraint(
                fields=["offer", "price_type"], name="uniq_offer_price"
            )
        ]

    def __str__(self) -> str:
        return f"{self.value} {self.currency}"


class Stock(models.Model):
    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="stock")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.CASCADE, related_name="+")
    quantity = models.DecimalField(_("quantity"), max_digits=15, decimal_places=3)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("stock")
        verbose_name_plural = _("stock")
        constraints = [
            models.UniqueConstraint(
                fields=["offer", "warehouse"], name="uniq_offer_stock"
            )
        ]

    def __str__(self) -> str:
        return str(self.quantity)


class Picture(models.Model):
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="pictures"
    )
    # Path as 1C gives it, relative to the package: ``import_files/ab/<id>.jpg``.
    path = models.CharField(_("path"), max_length=NAME_LENGTH)
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    image = models.FileField(_("file"), upload_to="catalog/", max_length=NAME_LENGTH)

    class Meta:
        verbose_name = _("picture")
        verbose_name_plural = _("pictures")
        ordering = ["product", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "path"], name="uniq_product_picture"
            )
        ]

    def __str__(self) -> str:
        return self.path
