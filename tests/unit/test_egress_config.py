"""The egress rules as text (squid, nftables) and the guard's reading of squid's log."""

from __future__ import annotations

from agent.egress_guard import parse_squid_line
from common.allowlist import Allowlist
from common.egress_config import EgressPaths, nft_ruleset, squid_config


def test_squid_config_turns_each_rule_into_host_path_and_sni_checks() -> None:
    allowlist = Allowlist.parse([".example.com", "http://files.example.org/folder/", "https://api.test.io",
                                 "docs.test.io/guide"])
    conf = squid_config(allowlist, EgressPaths("/run/x")).splitlines()
    assert "acl rule0_host dstdomain .example.com" in conf
    assert "acl rule1_path urlpath_regex ^/folder/" in conf  # trailing slash: /folder itself is not admitted
    assert r"acl rule3_path urlpath_regex ^/guide($|[/?#])" in conf
    assert "http_access allow http_in !CONNECT rule1_host rule1_path" in conf
    assert not any("rule2_host" in line and line.startswith("http_access") for line in conf)  # https only
    # SNI: only rules that admit https (scheme-less or https://); a path cannot be seen inside TLS
    assert "acl allowed_sni ssl::server_name .example.com api.test.io docs.test.io" in conf
    assert conf.index("http_access deny all") > max(i for i, line in enumerate(conf) if "http_access allow" in line)
    assert "deny_info TCP_RESET all" in conf and "host_verify_strict on" in conf
    assert "ssl_bump peek step1" in conf and not any("bump bump" in line for line in conf)  # never decrypts


def test_an_empty_allowlist_admits_nothing() -> None:
    conf = squid_config(Allowlist(()), EgressPaths("/run/x"))
    assert "http_access allow http_in" not in conf and "ssl::server_name .invalid" in conf


def test_nft_ruleset_replaces_only_its_own_table() -> None:
    rules = nft_ruleset(["10.231.0.1/32", "10.231.0.11-10.231.0.60"], ["10.0.0.2"])
    tables = [line for line in rules.splitlines() if "table" in line]
    assert tables == ["table inet bench_egress", "delete table inet bench_egress", "table inet bench_egress {"]
    assert "flush ruleset" not in rules
    assert "ip daddr { 10.231.0.1/32, 10.231.0.11-10.231.0.60 } return" in rules
    assert "tcp dport 443 redirect to :3130" in rules and "meta l4proto tcp redirect to :3131" in rules


def test_guard_reads_refusals_from_squids_log() -> None:
    denied = parse_squid_line("1796174229 10.231.0.11:54236 TCP_DENIED/000 CONNECT denied.test:443 denied.test - "
                              "10.231.0.201:443")
    assert denied is not None and denied.destination == "10.231.0.201:443" and denied.name == "denied.test"
    literal = parse_squid_line("1796174229 10.231.0.11:48734 TCP_DENIED/000 GET http://10.231.0.201/x - - "
                               "10.231.0.201:80")
    assert literal is not None and literal.name == "" and "allowlist" in literal.reason
    mismatch = parse_squid_line("1796174229 10.231.0.11:1 NONE_NONE/409 GET http://allowed.test/x - - "
                                "10.231.0.201:80")
    assert mismatch is not None and "mismatch" in mismatch.reason and mismatch.name == "allowed.test"
    named = parse_squid_line("1796174229 10.231.0.11:54236 TCP_DENIED/000 CONNECT denied.test:443 denied.test - "
                             "10.231.0.201:443 nobody")
    assert named is not None and named.user == "nobody" and named.destination == "10.231.0.201:443"
    unnamed = parse_squid_line("1796174229 10.231.0.11:54236 TCP_DENIED/000 CONNECT denied.test:443 denied.test - "
                               "10.231.0.201:443 -")
    assert unnamed is not None and unnamed.user == ""
    for fine in ("1796174196 10.231.0.11:43356 TCP_MISS/200 GET http://allowed.test/x - 10.231.0.200 "
                 "10.231.0.200:80",
                 "1796174229 10.231.0.11:47744 NONE_NONE/000 CONNECT 10.231.0.200:443 allowed.test - "
                 "10.231.0.200:443", "garbage", ""):
        assert parse_squid_line(fine) is None
