"""Restricted workspaces: the URL allowlist, validated exactly by the product's rules, and the
question an egress proxy asks of it ("may this host/path be reached?"). Pure: no I/O.

The rules (seed, "URLs must comply with the following rules"):
- an entry is 1 to 263 characters, dots included, and matches the product's regex;
- it may begin with a leading dot: the domain and all of its subdomains;
- labels (domain and subdomains) are 1 to 63 letters and digits, case-insensitive, with hyphens and
  underscores but not as a label's first or last character; a dot only after a label;
- an optional scheme (http:// or https://) and an optional path, where a trailing slash matters:
  `ftp.example.net/folder/` does not allow `ftp.example.net/folder`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_ENTRY_CHARS = 263
MAX_LABEL_CHARS = 63
# The product documentation's regex (written for grep, `\{2,256}` there), applied to the whole entry.
SEED_REGEX = re.compile(r"[(http(s)?):\/\/(www\.)?a-zA-Z0-9@:%._\+~#=-]{2,256}"
                        r"\.[a-z]{2,6}\b([-a-zA-Z0-9@:%_\+.~#?&//=]*)")
SCHEMES = ("http", "https")
_LABEL_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class InvalidEntry(ValueError):
    """An allowlist entry that breaks a rule; the message names the rule."""


@dataclass(frozen=True)
class AllowRule:
    entry: str  # as written, for messages and settings
    host: str  # lower-case, without the leading dot
    subdomains: bool  # written with a leading dot: the domain and all its subdomains
    scheme: str | None  # None: http and https
    path: str | None  # None: every path

    def admits_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host == self.host or (self.subdomains and host.endswith("." + self.host))

    def admits(self, scheme: str, host: str, path: str = "/") -> bool:
        if self.scheme is not None and scheme.lower() != self.scheme:
            return False
        if not self.admits_host(host):
            return False
        return self.path is None or path_admitted(self.path, path)


def path_admitted(rule_path: str, path: str) -> bool:
    """`/folder/` admits `/folder/` and what lies below it, not `/folder`; `/folder` admits `/folder`
    and what lies below `/folder/` (not `/folderx`)."""
    path = path.split("?", 1)[0].split("#", 1)[0] or "/"
    if rule_path.endswith("/"):
        return path.startswith(rule_path)
    return path == rule_path or path.startswith(rule_path + "/")


def parse_entry(text: str) -> AllowRule:
    entry = text.strip()
    if not entry:
        raise InvalidEntry("an entry cannot be empty")
    if len(entry) > MAX_ENTRY_CHARS:
        raise InvalidEntry(f"an entry is 1 to {MAX_ENTRY_CHARS} characters including dots; this one has {len(entry)}")
    if any(c.isspace() for c in entry):
        raise InvalidEntry("an entry cannot contain white space")
    scheme = None
    rest = entry
    found = _SCHEME.match(entry)
    if found:
        scheme = found.group(1).lower()
        if scheme not in SCHEMES:
            raise InvalidEntry(f"the scheme must be http:// or https://, not {found.group(1)}://")
        rest = entry[found.end():]
    elif "://" in entry:
        raise InvalidEntry("a scheme is letters followed by :// (http:// or https://)")
    host, slash, path = rest.partition("/")
    if "@" in host:
        raise InvalidEntry("user names or passwords (user@host) are not part of an entry")
    if ":" in host:
        if host.rsplit(":", 1)[1].isdigit():
            raise InvalidEntry("a port is not part of an entry: the proxy admits the standard HTTP and HTTPS ports")
        raise InvalidEntry("a scheme is written http:// or https:// in front of the host")
    subdomains = host.startswith(".")
    labels = (host[1:] if subdomains else host).split(".")
    _check_labels(labels)
    if not re.fullmatch(r"[a-z]{2,6}", labels[-1], re.IGNORECASE):
        raise InvalidEntry(f"the top-level domain must be 2 to 6 letters, got {labels[-1]!r} "
                           "(IP addresses are not allowed: name the host)")
    if len(host) - len(labels[-1]) - 1 < 2:
        raise InvalidEntry("the allowlist's URL pattern needs at least 2 characters before the top-level domain")
    full_path = slash + path if slash else None
    if full_path is not None and not re.fullmatch(r"[-a-zA-Z0-9@:%_+.~#?&/=]*", full_path):
        bad = sorted({c for c in full_path if not re.fullmatch(r"[-a-zA-Z0-9@:%_+.~#?&/=]", c)})
        raise InvalidEntry(f"the path has characters an entry may not contain: {' '.join(bad)}")
    if full_path is not None and "//" in full_path:
        raise InvalidEntry("the path cannot contain an empty segment (//)")
    # Names are case-insensitive, so the pattern (whose top-level domain is written [a-z]) is applied to
    # the entry with its host in lower case.
    if not SEED_REGEX.fullmatch(entry[: len(entry) - len(rest)] + host.lower() + slash + path):
        raise InvalidEntry("the entry does not match the allowlist's URL pattern")
    host_name = ".".join(labels).lower()
    return AllowRule(entry=entry, host=host_name, subdomains=subdomains, scheme=scheme,
                     path=full_path if full_path not in (None, "/") else None)


def _check_labels(labels: list[str]) -> None:
    if len(labels) < 2:
        raise InvalidEntry("name a domain with its top-level domain (e.g. example.com)")
    for position, label in enumerate(labels):
        if not label:
            where = "at the end" if position == len(labels) - 1 else "twice in a row" if position else "at the start"
            raise InvalidEntry(f"a dot must come after a domain or subdomain label (found one {where}); "
                               "only one leading dot is allowed")
        if len(label) > MAX_LABEL_CHARS:
            raise InvalidEntry(f"label {label[:20]!r}… is {len(label)} characters; "
                               f"a domain or subdomain is 1 to {MAX_LABEL_CHARS}")
        if not _LABEL_CHARS.fullmatch(label):
            bad = sorted({c for c in label if not _LABEL_CHARS.fullmatch(c)})
            raise InvalidEntry(f"label {label!r} has {' '.join(bad)}: only letters, digits, hyphens and underscores")
        if label[0] in "-_" or label[-1] in "-_":
            raise InvalidEntry(f"label {label!r}: a hyphen or underscore cannot be a label's first or last character")


@dataclass(frozen=True)
class Allowlist:
    rules: tuple[AllowRule, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        """Every entry checked; one message listing every bad line (1-based) so a file is fixed in one go."""
        rules: list[AllowRule] = []
        problems: list[str] = []
        seen: set[str] = set()
        for number, raw in enumerate(entries, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            try:
                rule = parse_entry(text)
            except InvalidEntry as exc:
                problems.append(f"line {number}: {text[:80]!r}: {exc}")
                continue
            if rule.entry.lower() not in seen:
                seen.add(rule.entry.lower())
                rules.append(rule)
        if problems:
            raise InvalidEntry("; ".join(problems))
        return cls(tuple(rules))

    def admits(self, scheme: str, host: str, path: str = "/") -> bool:
        return any(rule.admits(scheme, host, path) for rule in self.rules)

    def admits_host(self, host: str) -> bool:
        """For HTTPS (only the SNI name is visible to the proxy): a host any rule names, whatever its path."""
        return any(rule.admits_host(host) and rule.scheme in (None, "https") for rule in self.rules)
