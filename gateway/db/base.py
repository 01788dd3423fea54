"""Declarative base with a naming convention, and portable column types."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:  # noqa: ARG002
        if not isinstance(value, dt.datetime):
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso_z(moment: dt.datetime) -> str:
    """A time as the API, webhooks and notices write it (as pydantic does): ISO 8601 in UTC,
    ending in Z."""
    return moment.astimezone(dt.UTC).isoformat().removesuffix("+00:00") + "Z"


_WIDTHS: dict[str, dict[str, int]] = {}


def fit(model: type[Base], values: dict[str, Any]) -> dict[str, Any]:
    """`values` with every string cut to its column's declared length. Values that come from a
    received file (ISA elements read from a mis-padded ISA, a segment id, a control number) can
    be longer than any valid one: SQLite would store them, PostgreSQL refuses the whole row."""
    table = model.__table__
    name = str(getattr(table, "name", model.__name__))
    widths = _WIDTHS.get(name)
    if widths is None:
        widths = {}
        for column in table.columns:
            length = getattr(column.type, "length", None)
            if isinstance(length, int):
                widths[column.name] = length
        _WIDTHS[name] = widths
    return {
        k: v[: widths[k]] if isinstance(v, str) and k in widths and len(v) > widths[k] else v
        for k, v in values.items()
    }
