"""Remediation text, written in Markdown by the catalogue or a user's profile, as HTML that
can never carry markup of its own.

markdown-it-py renders CommonMark with raw HTML off (a tag is shown as text), images off (the
page's CSP would refuse them anyway) and its link validation on (no javascript:, vbscript:,
file: or data: link). Controls and bidi characters are shown escaped first, like every other
string of the report; links get rel="noopener noreferrer".
"""

from __future__ import annotations

import functools
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup

from probe.escaping import shown


def _link_open(renderer: RendererHTML, tokens: list[Token], index: int, options: OptionsDict,
               env: EnvType) -> str:
    tokens[index].attrSet("rel", "noopener noreferrer")
    return renderer.renderToken(tokens, index, options, env)


@functools.cache
def _parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.disable("image")
    parser.add_render_rule("link_open", _link_open)
    return parser


def render(text: str) -> Markup:
    """`text` (Markdown) as safe HTML."""
    html: Any = _parser().render(shown(text, lines=True))
    return Markup(str(html))
