"""The outbound-URL guard: internal addresses refused after DNS resolution, an allowlist for
operators, the checked address is the one connected to, and failures are errors, not crashes."""

from __future__ import annotations

import socket

import pytest

from cdphub import outbound
from cdphub.outbound import OutboundFailed, OutboundRefused, outbound_destination, outbound_post
from tests.server import WebhookReceiver, free_port

REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture
def dns(monkeypatch):
    """Answers for made-up host names (DNS is outside the machine); others resolve as usual."""
    answers: dict[str, list[str]] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (address, port),
                )
                for address in answers[host]
            ]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(outbound.socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:5432/", "127.0.0.1 is a loopback address"),
        ("http://localhost:8000/hook", "localhost (127.0.0.1) is a loopback address"),
        ("http://[::1]/hook", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://2130706433/hook", "2130706433 (127.0.0.1) is a loopback address"),
        ("http://10.1.2.3/hook", "10.1.2.3 is a private address"),
        ("http://172.16.0.1/hook", "private address"),
        ("http://192.168.1.1/hook", "private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is the cloud metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is the cloud metadata"),
        ("http://169.254.1.1/hook", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://0.0.0.0:8000/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://100.64.0.1/hook", "not a public address"),
    ],
)
def test_internal_addresses_are_refused(url, reason, settings):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = []
    with pytest.raises(OutboundRefused, match=reason.replace("(", r"\(").replace(")", r"\)")):
        outbound_destination(url)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://files.example/x", "gopher://127.0.0.1:6379/_", "hooks"]
)
def test_only_http_and_https_are_accepted(url):
    with pytest.raises(OutboundRefused, match="must start with https:// or http://"):
        outbound_destination(url)


def test_a_name_resolving_to_an_internal_address_is_refused(dns, settings):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = []
    dns["hooks.example"] = ["10.0.0.7"]
    with pytest.raises(OutboundRefused, match=r"hooks.example \(10.0.0.7\) is a private address"):
        outbound_destination("https://hooks.example/x")
    # one internal address among public ones is enough: the connection could go there
    dns["mixed.example"] = ["93.184.215.14", "127.0.0.1"]
    with pytest.raises(OutboundRefused, match="loopback"):
        outbound_destination("https://mixed.example/x")


def test_a_public_address_passes_and_is_the_one_to_connect_to(dns):
    dns["hooks.example"] = ["93.184.215.14"]
    destination = outbound_destination("https://hooks.example/in?token=1")
    assert destination.addresses == ("93.184.215.14",)
    assert (destination.host, destination.port, destination.target) == (
        "hooks.example",
        443,
        "/in?token=1",
    )


def test_an_unresolvable_host_is_refused():
    with pytest.raises(OutboundRefused, match="cannot be resolved"):
        outbound_destination("https://no-such-host.invalid/x")


@pytest.mark.parametrize("entry", ["127.0.0.1", "127.0.0.0/8", "localhost"])
def test_the_allowlist_lets_a_local_receiver_through(entry, settings):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = [entry]
    with WebhookReceiver() as receiver:
        url = (
            receiver.url.replace("127.0.0.1", "localhost") if entry == "localhost" else receiver.url
        )
        status = outbound_post(url, b'{"a": 1}', headers={"Content-Type": "application/json"})
    assert status == 200
    assert receiver.bodies == [{"a": 1}]


def test_the_connection_goes_to_the_checked_address_under_the_url_host_name(
    dns, settings, monkeypatch
):
    # Given a name whose (checked, allowed) answer is 127.0.0.1 and nothing else knows it
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.0/8"]
    dns["receiver.test"] = ["127.0.0.1"]
    with WebhookReceiver() as receiver:
        url = f"http://receiver.test:{receiver.port}/hook?x=1"
        # When the name answers differently after the check (DNS rebinding)
        checked = outbound.outbound_destination

        def check_then_rebind(url):
            destination = checked(url)
            dns["receiver.test"] = ["10.9.9.9"]
            return destination

        monkeypatch.setattr(outbound, "outbound_destination", check_then_rebind)
        outbound_post(url, b"{}")

    # Then the request went to the address that was checked, with the name as Host
    (request,) = receiver.requests
    assert request["path"] == "/hook?x=1"
    assert request["headers"]["Host"] == f"receiver.test:{receiver.port}"


def test_an_unreachable_port_is_an_error_not_a_crash(settings):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    with pytest.raises(OutboundFailed, match=r"could not deliver to 127.0.0.1:\d+"):
        outbound_post(f"http://127.0.0.1:{free_port()}/hook", b"{}")


def test_a_redirect_is_not_followed(settings):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    with (
        WebhookReceiver() as inside,
        WebhookReceiver(status=307, location=inside.url) as receiver,
        pytest.raises(OutboundFailed, match="answered 307"),
    ):
        outbound_post(receiver.url, b"{}")
    assert inside.requests == []


def test_an_error_answer_is_reported(settings):
    settings.CDPHUB_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    with (
        WebhookReceiver(status=500) as receiver,
        pytest.raises(OutboundFailed, match=r"answered 500 \(an error\)"),
    ):
        outbound_post(receiver.url, b"{}")
