"""The restricted-workspace allowlist, checked against every example the product documentation gives
and against entries that each break one rule (the message must name that rule)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.allowlist import Allowlist, InvalidEntry, parse_entry


def words(text: str) -> list[str]:
    """The examples as the documentation prints them: separated by spaces."""
    return text.split()


SEED_VALID = words(
    "example.com www.example.com https://www.example.com subdomain.example.com subdomain.example.com/folder "
    "subdomain.example.com/folder/subfolder sub-domain.example.com sub_domain.example.com example.co.uk "
    "subdomain.example.co.uk sub-domain.example.co.uk"
)
SEED_DATA_SCIENCE = words(
    "pypi.org files.pythonhosted.org repo.anaconda.com conda.anaconda.org github.com cran.r-project.org "
    "bioconductor.org www.npmjs.com mvnrepository.com"
)
MORE_VALID = [".example.com", "http://example.com/", "ftp.example.net/folder/", "EXAMPLE.COM", "ab.io", "example.COM",
              "x" * 63 + ".com", "a1-b_2.example.org", "example.com/a/b?x=1&y=2"]


@pytest.mark.parametrize("entry", SEED_VALID + SEED_DATA_SCIENCE + MORE_VALID)
def test_valid_entries_are_accepted(entry: str) -> None:
    parse_entry(entry)


INVALID: list[tuple[str, str]] = [
    ("", "cannot be empty"),
    ("   ", "cannot be empty"),
    (("a" * 60 + ".") * 5 + "example.com", "1 to 263 characters"),
    ("a.io", "at least 2 characters before the top-level domain"),
    ("exa mple.com", "white space"),
    ("example", "top-level domain"),
    ("localhost", "top-level domain"),
    ("10.0.0.1", "top-level domain must be 2 to 6 letters"),
    ("example.c", "top-level domain"),
    ("example.abcdefg", "top-level domain"),
    ("example.c0m", "top-level domain"),
    ("..example.com", "dot must come after"),
    ("example..com", "dot must come after"),
    ("example.com.", "dot must come after"),
    (".", "name a domain"),
    ("-example.com", "first or last character"),
    ("example-.com", "first or last character"),
    ("_example.com", "first or last character"),
    ("example_.com", "first or last character"),
    ("sub.-domain.example.com", "first or last character"),
    ("x" * 64 + ".com", "1 to 63"),
    ("exa!mple.com", "only letters, digits, hyphens and underscores"),
    ("exa*mple.com", "only letters, digits, hyphens and underscores"),
    ("*.example.com", "only letters, digits, hyphens and underscores"),
    ("ex%ample.com", "only letters, digits, hyphens and underscores"),
    ("bücher.de", "only letters, digits, hyphens and underscores"),
    ("ftp://example.com", "http:// or https://"),
    ("file://example.com", "http:// or https://"),
    ("https:/example.com", "a scheme is written http:// or https://"),
    ("http:example.com", "a scheme is written http:// or https://"),
    ("1http://example.com", "scheme"),
    ("user@example.com", "user names or passwords"),
    ("https://user:pw@example.com", "user names or passwords"),
    ("example.com:8080", "port"),
    ("https://example.com:443/", "port"),
    ("example.com/fol der", "white space"),
    ("example.com/a<b", "path has characters"),
    ("example.com/a\"b", "path has characters"),
    ("example.com//x", "empty segment"),
]


@pytest.mark.parametrize(("entry", "reason"), INVALID)
def test_invalid_entries_are_refused_with_the_rule_they_break(entry: str, reason: str) -> None:
    with pytest.raises(InvalidEntry) as refused:
        parse_entry(entry)
    assert reason in str(refused.value), str(refused.value)


def test_at_least_thirty_distinct_invalid_cases() -> None:
    assert len({entry for entry, _ in INVALID}) >= 30


def test_a_trailing_slash_matters() -> None:
    with_slash = Allowlist.parse(["ftp.example.net/folder/"])
    assert with_slash.admits("http", "ftp.example.net", "/folder/")
    assert with_slash.admits("http", "ftp.example.net", "/folder/file.txt")
    assert not with_slash.admits("http", "ftp.example.net", "/folder")
    without = Allowlist.parse(["ftp.example.net/folder"])
    assert without.admits("http", "ftp.example.net", "/folder")
    assert without.admits("http", "ftp.example.net", "/folder/x")
    assert not without.admits("http", "ftp.example.net", "/folderx")
    assert not without.admits("http", "ftp.example.net", "/")


def test_a_leading_dot_admits_the_domain_and_every_subdomain_only() -> None:
    rules = Allowlist.parse([".example.com"])
    for host in ("example.com", "a.example.com", "a.b.EXAMPLE.com"):
        assert rules.admits("https", host), host
    for host in ("badexample.com", "example.com.evil.org", "example.org"):
        assert not rules.admits("https", host), host
    exact = Allowlist.parse(["example.com"])
    assert exact.admits("http", "EXAMPLE.com") and not exact.admits("http", "www.example.com")


def test_a_scheme_limits_the_rule_to_it() -> None:
    rules = Allowlist.parse(["https://secure.example.com"])
    assert rules.admits("https", "secure.example.com")
    assert not rules.admits("http", "secure.example.com")


def test_a_file_is_checked_whole_and_every_bad_line_is_named() -> None:
    with pytest.raises(InvalidEntry) as refused:
        Allowlist.parse(["# data science", "pypi.org", "bad_.org", "", "github.com", "10.1.1.1"])
    text = str(refused.value)
    assert "line 3: 'bad_.org'" in text and "line 6: '10.1.1.1'" in text
    assert len(Allowlist.parse(["pypi.org", "PyPI.org", "# comment", "github.com"]).rules) == 2


label = st.from_regex(r"[a-z0-9]([a-z0-9_-]{0,10}[a-z0-9])", fullmatch=True)


@given(st.lists(label, min_size=1, max_size=4), st.from_regex(r"[a-z]{2,6}", fullmatch=True), st.booleans())
def test_any_name_built_by_the_rules_is_accepted_and_admits_itself(labels: list[str], tld: str,
                                                                    leading_dot: bool) -> None:
    host = ".".join([*labels, tld])
    rule = parse_entry(("." if leading_dot else "") + host)
    assert rule.admits("https", host)
    assert rule.admits("http", "www." + host) == leading_dot
