from __future__ import annotations

import datetime as dt

import pytest

from consent.tcf import InvalidTcfString, tcf_decode
from tests.consent.tcf_strings import tcf_core_string

# Published fixtures of the TCF v2 format (generated with the IAB's reference encoder).
V2_0_RANGE_ENCODED = (
    "COvzTO5OvzTO5B7ABCENAPCYAKdAADkAAIqIFhwBAAGAAXAFGAsMAhYAgAMAAegBYAEKAAA"
    ".IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQ"
    "AAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw.QE5QAwCvgHyATkA"
)
V2_2 = "COvzTO5OvzTO5B7ABCENAPEYAIAAAIAAAIqIAAoAAoAA.QAAo.IAAo"


def test_decodes_a_range_encoded_v2_string():
    decoded = tcf_decode(V2_0_RANGE_ENCODED)
    assert decoded.version == 2
    assert decoded.created == dt.datetime(2020, 3, 5, 19, 24, 40, 900000, tzinfo=dt.UTC)
    assert (decoded.cmp_id, decoded.cmp_version, decoded.consent_screen) == (123, 1, 2)
    assert decoded.consent_language == "EN"
    assert decoded.vendor_list_version == 15
    assert decoded.policy_version == 2
    assert decoded.special_feature_opt_ins == {1}
    assert decoded.purpose_consents == {1, 3, 6, 7, 8, 10}
    assert decoded.purpose_legitimate_interests == {3, 4, 5, 8}
    assert decoded.purpose_one_treatment is True
    assert decoded.publisher_country == "FR"
    assert decoded.vendor_consents == {12, 23, 163, 707}
    assert decoded.vendor_legitimate_interests == {48, 61, 88, 133}


def test_decodes_a_v2_2_bitfield_string():
    decoded = tcf_decode(V2_2)
    assert decoded.policy_version == 4
    assert decoded.purpose_consents == {1}
    assert decoded.vendor_consents == {1}


def test_round_trips_a_written_core_segment():
    decoded = tcf_decode(tcf_core_string({1, 2, 3, 4, 7, 11}, vendors={5, 755}))
    assert decoded.purpose_consents == {1, 2, 3, 4, 7, 11}
    assert decoded.vendor_consents == {5, 755}
    assert decoded.vendor_list_version == 150
    assert decoded.publisher_country == "NL"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("not base64!", "base64url"),
        ("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA", "version 1"),
        (V2_2[:20], "ends before"),
    ],
)
def test_refuses_bad_strings_with_a_reason(text, message):
    with pytest.raises(InvalidTcfString, match=message):
        tcf_decode(text)
