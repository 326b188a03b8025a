"""Key references: the shared vectors, canonical forms, and fuzzing (only UsageError may escape)."""

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmcert.errors import UsageError
from hsmcert.keyref import ACCEPTED_FORMS, parse_keyref

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "keyrefs.json").read_text())


@pytest.mark.parametrize("case", VECTORS["valid"], ids=lambda c: c["text"][:60])
def test_valid_vectors(case: dict) -> None:
    ref = parse_keyref(case["text"])
    assert (ref.kind, ref.service, ref.key, ref.version) == (
        case["kind"],
        case["service"],
        case["key"],
        case["version"],
    )
    assert str(ref) == case["canonical"]
    # The canonical form parses back to the same reference (modulo the cloud suffix).
    again = parse_keyref(str(ref))
    assert (again.kind, again.service, again.key, again.version) == (
        ref.kind,
        ref.service,
        ref.key,
        ref.version,
    )


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["text"][:60])
def test_invalid_vectors(case: dict) -> None:
    with pytest.raises(UsageError) as info:
        parse_keyref(case["text"])
    assert case["error"] in info.value.message
    # Every error is one sentence and lists the accepted forms as the remedy.
    assert "\n" not in info.value.message
    assert info.value.remedy is not None and ACCEPTED_FORMS[0] in info.value.remedy


def test_vector_counts() -> None:
    assert len(VECTORS["valid"]) + len(VECTORS["invalid"]) >= 40


def test_sovereign_cloud_url_keeps_its_host() -> None:
    ref = parse_keyref("https://kv1.vault.azure.cn/keys/k")
    assert ref.azure_url == "https://kv1.vault.azure.cn"
    assert parse_keyref("managedhsm:contoso:k").azure_url == "https://contoso.managedhsm.azure.net"


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_any_text(text: str) -> None:
    with contextlib.suppress(UsageError):
        parse_keyref(text)


_piece = st.text(alphabet="abcXYZ019-_=,;:?/.%\\ \t", max_size=30)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(
        ["managedhsm:", "vault:", "akv:", "azurekms:", "engine:e_akv:", "https://", "HTTPS://x."]
    ),
    st.lists(_piece, max_size=5),
)
def test_fuzz_near_valid(prefix: str, pieces: list[str]) -> None:
    text = prefix + ":".join(pieces)
    try:
        ref = parse_keyref(text)
    except UsageError:
        return
    # Whatever parses has a canonical form that parses to the same thing.
    assert parse_keyref(str(ref)).key == ref.key
