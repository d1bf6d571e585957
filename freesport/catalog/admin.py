from django.contrib import admin

from freesport.catalog import models


class ExternalAdmin(admin.ModelAdmin):
    search_fields = ["external_id", "name"]
    readonly_fields = ("content_hash", "last_seen_session", "created_at", "updated_at")


@admin.register(models.Group)
class GroupAdmin(ExternalAdmin):
    list_display = ("name", "parent", "external_id", "is_deleted")


@admin.register(models.Property)
class PropertyAdmin(ExternalAdmin):
    list_display = ("name", "value_type", "for_offers", "external_id")


@admin.register(models.PriceType, models.Warehouse, models.Unit)
class ReferenceAdmin(ExternalAdmin):
    list_display = ("name", "external_id", "is_deleted")


class PictureInline(admin.TabularInline):
    model = models.Picture
    extra = 0


@admin.register(models.Product)
class ProductAdmin(ExternalAdmin):
    list_display = ("name", "sku", "group", "is_active", "is_deleted", "external_id")
    list_filter = ("is_active", "is_deleted")
    search_fields = ["external_id", "name", "sku"]
    inlines = [PictureInline]
    raw_id_fields = ("group",)


class PriceInline(admin.TabularInline):
    model = models.Price
    extra = 0


class StockInline(admin.TabularInline):
    model = models.Stock
    extra = 0


@admin.register(models.Offer)
class OfferAdmin(ExternalAdmin):
    list_display = ("name", "external_id", "product", "is_active")
    list_filter = ("is_active",)
    raw_id_fields = ("product",)
    inlines = [PriceInline, StockInline]
