"""Record ids: the published 15→18 vectors, normalisation and the org's generator."""

from __future__ import annotations

import pytest

from syncswim_lib.sandbox.salesforce import ids


@pytest.mark.parametrize(
    ("id15", "id18"),
    [
        ("a0RE000000IJmcN", "a0RE000000IJmcNMAT"),
        ("001A000010khO8J", "001A000010khO8JIAU"),
        ("AbCdEfGhIjKlMnO", "AbCdEfGhIjKlMnOVKV"),
        ("aBcDEfgHIJKLMNO", "aBcDEfgHIJKLMNO025"),
    ],
)
def test_published_vectors(id15: str, id18: str) -> None:
    assert ids.to18(id15) == id18
    assert ids.normalize(id15) == id18
    assert ids.normalize(id18) == id18
    assert ids.normalize(id18.lower()[:15] + id18[15:]) != id18  # case matters in the 15


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "001",
        "001A000010khO8JIA",
        "001A000010khO8J!!!",
        "001A000010khO8JZZZ",
        "001A000010khO8J-AU",
    ],
)
def test_not_ids(bad: str) -> None:
    assert ids.normalize(bad) is None


def test_generator_is_increasing_and_prefixed() -> None:
    gen = ids.IdGenerator()
    made = [gen.next("001") for _ in range(100)] + [gen.next("003")]
    assert all(len(i) == 18 and ids.normalize(i) == i for i in made)
    assert made[-1].startswith("003")
    assert len(set(made)) == len(made)
    assert [ids.decode_seq(i) for i in made] == list(range(1, 102))
    gen.bump_to(5000)
    assert ids.decode_seq(gen.next("001")) == 5001
