"""Which retypes of a mapped column schema drift takes as widenings (the entity goes on)
and which stop it, with the type names the servers give."""

from __future__ import annotations

import pytest

from syncswim_lib.pipeline.widening import widens

PG_WIDER = [
    ("character varying(20)", "character varying(200)"),
    ("character varying(20)", "text"),
    ("smallint", "integer"),
    ("integer", "bigint"),
    ("numeric(10,2)", "numeric(12,2)"),
    ("numeric(10,2)", "numeric(12,4)"),
    ("numeric(10,2)", "numeric"),
    ("real", "double precision"),
    ("timestamp(3) without time zone", "timestamp without time zone"),
    ("timestamp(0) with time zone", "timestamp(3) with time zone"),
]
PG_NOT = [
    ("character varying(200)", "character varying(20)"),
    ("text", "character varying(200)"),
    ("bigint", "integer"),
    ("numeric(10,2)", "numeric(10,4)"),  # two digits fewer before the point
    ("numeric(10,2)", "numeric(12,1)"),
    ("numeric", "numeric(38,10)"),
    ("double precision", "real"),
    ("integer", "numeric(20,0)"),  # another family: not judged
    ("timestamp without time zone", "timestamp with time zone"),
    ("timestamp without time zone", "timestamp(3) without time zone"),
    ("text", "jsonb"),
    ("character varying(20)", "character varying(20)"),  # not a change
]
MY_WIDER = [
    ("varchar(100)", "varchar(300)"),
    ("varchar(100)", "text"),
    ("varchar(100)", "mediumtext"),
    ("text", "longtext"),
    ("tinyint(4)", "int(11)"),
    ("int(11)", "bigint(20)"),
    ("int(10) unsigned", "bigint(20) unsigned"),
    ("decimal(10,2)", "decimal(14,2)"),
    ("float", "double"),
    ("datetime", "datetime(6)"),
    ("datetime(3)", "datetime(6)"),
]
MY_NOT = [
    ("varchar(20000)", "text"),  # 80,000 bytes of utf8mb4 do not fit 65,535
    ("mediumtext", "text"),
    ("tinyint(1)", "int(11)"),  # the boolean
    ("int(11)", "int(11) unsigned"),
    ("int(10) unsigned", "bigint(20)"),
    ("decimal(10,2)", "decimal(10,3)"),
    ("decimal(10,2)", "decimal"),  # MariaDB's bare decimal is decimal(10,0)
    ("datetime(6)", "datetime"),
    ("datetime", "timestamp"),
    ("varchar(100)", "blob"),
]


@pytest.mark.parametrize(("old", "new"), PG_WIDER)
def test_postgres_widenings(old: str, new: str) -> None:
    assert widens(old, new, mysql=False)


@pytest.mark.parametrize(("old", "new"), PG_NOT)
def test_postgres_retypes_that_are_not_widenings(old: str, new: str) -> None:
    assert not widens(old, new, mysql=False)


@pytest.mark.parametrize(("old", "new"), MY_WIDER)
def test_mysql_widenings(old: str, new: str) -> None:
    assert widens(old, new, mysql=True)


@pytest.mark.parametrize(("old", "new"), MY_NOT)
def test_mysql_retypes_that_are_not_widenings(old: str, new: str) -> None:
    assert not widens(old, new, mysql=True)


def test_a_bare_time_means_whole_seconds_on_mysql_only() -> None:
    assert widens("time(6)", "time", mysql=False)
    assert not widens("time(6)", "time", mysql=True)
    assert widens("time", "time(6)", mysql=True)
