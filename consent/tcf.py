"""IAB TCF v2 (v2.0 to v2.2) consent strings: a decoder of the core segment.

The PyPI packages for TCF are unmaintained (the most used one was last released in 2022) and
the core segment is a fixed bit layout, so it is decoded here, strictly: a string that is
truncated, not base64url or not version 2 is refused with a message saying why.

Layout (IAB "TCF v2 consent string" specification, core segment, in bits): Version 6, Created 36,
LastUpdated 36, CmpId 12, CmpVersion 12, ConsentScreen 6, ConsentLanguage 12, VendorListVersion
12, TcfPolicyVersion 6, IsServiceSpecific 1, UseNonStandardTexts 1, SpecialFeatureOptIns 12,
PurposesConsent 24, PurposesLITransparency 24, PurposeOneTreatment 1, PublisherCC 12, then the
vendor consent section, the vendor legitimate-interest section and publisher restrictions.
Other segments (disclosed vendors, publisher TC) follow after a ``.`` and are ignored.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass

# Our purposes and the TCF purposes (by number) that must ALL have consent for ours to be granted.
#
# TCF purpose 1 ("store and/or access information on a device") is a precondition of every
# other one in a web context: without it nothing can be read from the device, so it is required
# by each mapping instead of standing for a purpose of its own.
#   2 basic ads, 3-4 ads profile and personalised ads, 7 ad measurement -> advertising
#   5-6 content profile and personalised content                         -> personalisation
#   8 content measurement, 9 market research                             -> analytics
# Purposes 10 (develop and improve services) and 11 (limited data to select content, v2.2) do
# not map to one of ours and are kept in the stored string only.
TCF_PURPOSE_MAP: dict[str, frozenset[int]] = {
    "advertising": frozenset({1, 2, 3, 4, 7}),
    "personalisation": frozenset({1, 5, 6}),
    "analytics": frozenset({1, 8, 9}),
}

DECISECOND = dt.timedelta(milliseconds=100)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class InvalidTcfString(ValueError):
    """The string is not a readable TCF v2 consent string; the message says why."""


@dataclass(frozen=True)
class TcfConsent:
    version: int
    created: dt.datetime
    last_updated: dt.datetime
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    policy_version: int
    is_service_specific: bool
    special_feature_opt_ins: frozenset[int]
    purpose_consents: frozenset[int]
    purpose_legitimate_interests: frozenset[int]
    purpose_one_treatment: bool
    publisher_country: str
    vendor_consents: frozenset[int]
    vendor_legitimate_interests: frozenset[int]


class _Bits:
    def __init__(self, data: bytes):
        self.bits = "".join(f"{byte:08b}" for byte in data)
        self.position = 0

    def int(self, width: int, name: str) -> int:
        end = self.position + width
        if end > len(self.bits):
            raise InvalidTcfString(f"TCF string ends before its {name} field (bit {self.position})")
        value = int(self.bits[self.position : end] or "0", 2)  # width 0: an empty section
        self.position = end
        return value

    def bool(self, name: str) -> bool:
        return bool(self.int(1, name))

    def bitfield(self, width: int, name: str) -> frozenset[int]:
        """Numbers (from 1) whose bit is set in the next ``width`` bits."""
        value = self.int(width, name)
        return frozenset(i + 1 for i in range(width) if value & (1 << (width - 1 - i)))

    def letters(self, count: int, name: str) -> str:
        return "".join(chr(ord("A") + self.int(6, name)) for _ in range(count))

    def timestamp(self, name: str) -> dt.datetime:
        return EPOCH + self.int(36, name) * DECISECOND

    def vendors(self, name: str) -> frozenset[int]:
        """A vendor section: a bitfield, or ranges when IsRangeEncoding is set."""
        max_vendor = self.int(16, f"{name} MaxVendorId")
        if not self.bool(f"{name} IsRangeEncoding"):
            return self.bitfield(max_vendor, name)
        vendors: set[int] = set()
        for _ in range(self.int(12, f"{name} NumEntries")):
            is_range = self.bool(f"{name} IsARange")
            start = self.int(16, f"{name} StartOrOnlyVendorId")
            end = self.int(16, f"{name} EndVendorId") if is_range else start
            if end < start or end > max_vendor:
                raise InvalidTcfString(f"{name} range {start}-{end} is out of order or bounds")
            vendors.update(range(start, end + 1))
        return frozenset(vendors)


def _base64url(segment: str) -> bytes:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidTcfString("TCF string is not base64url") from None


def tcf_decode(tcf_string: str) -> TcfConsent:
    """Decode the core segment of a TCF v2 consent string."""
    text = (tcf_string or "").strip()
    if not text:
        raise InvalidTcfString("TCF string is empty")
    bits = _Bits(_base64url(text.split(".")[0]))
    version = bits.int(6, "Version")
    if version != 2:
        raise InvalidTcfString(f"TCF string has version {version}; only version 2 is supported")
    fields: dict = {"version": version}
    fields["created"] = bits.timestamp("Created")
    fields["last_updated"] = bits.timestamp("LastUpdated")
    fields["cmp_id"] = bits.int(12, "CmpId")
    fields["cmp_version"] = bits.int(12, "CmpVersion")
    fields["consent_screen"] = bits.int(6, "ConsentScreen")
    fields["consent_language"] = bits.letters(2, "ConsentLanguage")
    fields["vendor_list_version"] = bits.int(12, "VendorListVersion")
    fields["policy_version"] = bits.int(6, "TcfPolicyVersion")
    fields["is_service_specific"] = bits.bool("IsServiceSpecific")
    bits.bool("UseNonStandardTexts")  # read to move past it; not needed
    fields["special_feature_opt_ins"] = bits.bitfield(12, "SpecialFeatureOptIns")
    fields["purpose_consents"] = bits.bitfield(24, "PurposesConsent")
    fields["purpose_legitimate_interests"] = bits.bitfield(24, "PurposesLITransparency")
    fields["purpose_one_treatment"] = bits.bool("PurposeOneTreatment")
    fields["publisher_country"] = bits.letters(2, "PublisherCC")
    fields["vendor_consents"] = bits.vendors("VendorConsents")
    fields["vendor_legitimate_interests"] = bits.vendors("VendorLegitimateInterests")
    return TcfConsent(**fields)
