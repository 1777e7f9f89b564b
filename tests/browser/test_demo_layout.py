"""The demo page's layout in Chromium: the "Keep me signed in" box sits with its label.

A rule for every ``input`` (padding, border, ``min-width: 14rem``) once hit the checkbox too, which then rendered
as a wide empty box detached from its label; the text-field rules are scoped to text and password inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from asgi_session import SessionConfig, SessionManager
from asgi_session.demo import ROLE_CLAIM, create_app
from asgi_session.stores import SQLiteStore
from tests._servers import serve_in_thread
from tests.browser._tab import Tab, expect

pytestmark = pytest.mark.browser


def test_the_remember_me_box_sits_with_its_label(new_tab: Callable[..., Tab], tmp_path: Path) -> None:
    config = SessionConfig(cookie_secure=False)
    manager = SessionManager(SQLiteStore(tmp_path / "demo.db"), config, claims=[ROLE_CLAIM])
    with serve_in_thread(create_app(manager)) as url:
        tab = new_tab(viewport={"width": 1100, "height": 900})
        tab.page.goto(url + "/")
        expect(tab.page.locator("#signed-out")).to_be_visible()
        box = tab.page.locator("#remember").bounding_box()
        name = tab.page.locator("#user").bounding_box()
        label = tab.page.locator("label:has(#remember)").bounding_box()
    assert box is not None
    assert name is not None
    assert label is not None
    assert box["width"] < 32  # a checkbox, not a 14rem text field
    assert name["width"] >= 14 * 16  # the user name field keeps its width
    assert label["width"] - box["width"] < 200  # the label is the box and its few words, nothing wider
