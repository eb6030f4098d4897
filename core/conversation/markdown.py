"""Markdown to safe HTML for posts and messages.

`<@123>` mention tokens become `<span class="mention" data-user-id="123">@Name</span>`
for the members the post really mentions (names passed in); any other token stays
as escaped text, so a body cannot forge a mention of someone it did not notify.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

_MENTION = re.compile(r"<@(\d{1,18})>")


def _mention_rule(state: StateInline, silent: bool) -> bool:
    if state.src[state.pos] != "<":
        return False
    match = _MENTION.match(state.src, state.pos)
    if match is None:
        return False
    names: Mapping[int, str] = state.env.get("mention_names", {})
    user_id = int(match.group(1))
    if user_id not in names:
        return False  # left to the text rule: rendered escaped, as written
    if not silent:
        token = state.push("mention", "", 0)
        token.meta = {"user_id": user_id, "name": names[user_id]}
    state.pos = match.end()
    return True


def _render_mention(
    _self: Any, tokens: Sequence[Token], idx: int, _options: Any, _env: Mapping[str, Any]
) -> str:
    meta = tokens[idx].meta
    return f'<span class="mention" data-user-id="{meta["user_id"]}">@{html.escape(meta["name"])}</span>'


@cache
def _renderer() -> MarkdownIt:
    # CommonMark with raw HTML off: any HTML in a body is escaped, never passed through;
    # markdown-it's link validation drops javascript:/vbscript:/data: (non-image) links.
    md = MarkdownIt("commonmark", {"html": False})
    md.inline.ruler.before("autolink", "mention", _mention_rule)
    md.add_render_rule("mention", _render_mention)
    return md


def render(body: str, mention_names: Mapping[int, str] | None = None) -> str:
    if not body:
        return ""
    return _renderer().render(body, {"mention_names": dict(mention_names or {})})
