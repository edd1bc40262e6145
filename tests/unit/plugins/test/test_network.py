from __future__ import annotations

import pytest

from ansible_collections.datamancy.stack.plugins.test.network import cidr, cidr_list, domain


@pytest.mark.parametrize("value", ["10.0.0.0/8", "203.0.113.10/32", "::1", "fc00::/7", "192.168.1.1"])
def test_cidr_accepts_networks_and_addresses(value):
    assert cidr(value)


@pytest.mark.parametrize("value", ["10.0.0.1/8", "300.0.0.0/8", "10.0.0.0/33", "", "  ", None, "example.com", 42,
                                   "10.0.0.0/8\n", " 10.0.0.0/8"])
def test_cidr_rejects_host_bits_bad_octets_and_junk(value):
    assert not cidr(value)


def test_cidr_list_takes_space_separated_and_lists():
    assert cidr_list("203.0.113.10/32 198.51.100.0/24")
    assert cidr_list(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize("value", ["", "10.0.0.0/8 nonsense", [], None, "10.0.0.0/8,192.168.0.0/16"])
def test_cidr_list_rejects_empty_and_any_bad_entry(value):
    assert not cidr_list(value)


@pytest.mark.parametrize("value", ["example.com", "stack.localhost", "a.b.example.test", "xn--bcher-kva.example"])
def test_domain_accepts_dns_names(value):
    assert domain(value)


@pytest.mark.parametrize(
    "value",
    ["localhost", "example.com.", "-bad.example", "bad-.example", "under_score.example", "1.2.3.4", "", None,
     "a" * 64 + ".example", "has space.example", "example.com\n", "stack.localhost\nevil.example"],
)
def test_domain_rejects_single_labels_trailing_dots_and_bad_labels(value):
    assert not domain(value)
