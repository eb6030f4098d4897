"""Markdown to safe HTML for posts and messages."""

from __future__ import annotations

from functools import cache

from markdown_it import MarkdownIt


@cache
def _renderer() -> MarkdownIt:
    # CommonMark with raw HTML off: any HTML in a body is escaped, never passed through;
    # markdown-it's link validation drops javascript:/vbscript:/data: (non-image) links.
    return MarkdownIt("commonmark", {"html": False})


def render(body: str) -> str:
    return _renderer().render(body) if body else ""
