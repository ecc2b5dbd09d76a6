"""The web page's own code (issue 19): data reaches the page as text only, and nothing is loaded
from another origin (nodes have no internet; the CSP would block it anyway)."""

from __future__ import annotations

import re

from manager.web.app import plotly_js, static_dir

HTML_SINKS = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function")


def test_scripts_never_parse_data_as_html() -> None:
    for script in static_dir().glob("*.js"):
        assert not HTML_SINKS.findall(script.read_text()), script


def test_pages_load_nothing_from_elsewhere_and_no_inline_script() -> None:
    for page in static_dir().glob("*.html"):
        text = page.read_text()
        assert not re.findall(r"(?:src|href)=\"(?:https?:)?//", text), page
        assert not re.findall(r"<script>(?!\s*</script>)|<script(?![^>]*\bsrc=)[^>]*>", text), page
        assert not re.findall(r"\son[a-z]+\s*=", text), page  # no inline event handlers


def test_the_plot_library_ships_with_the_package() -> None:
    assert plotly_js().stat().st_size > 1_000_000
