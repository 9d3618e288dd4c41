"""Read edgecomp's docstrings as they are written: Markdown-style code spans and lists, made into valid reST.

edgecomp's docstrings are plain text in Markdown's habits: `name` for code, and lists that start right after a
paragraph line ("Steps:" then "1. ..."), which reST reads as one paragraph with an unexpected indentation. autodoc
parses docstrings as reST, so this extension rewrites each docstring before it is parsed (``autodoc-process-docstring``):

- a code span `x` becomes the inline literal ``x`` (with an escaped boundary where a letter touches it, as in
  `AnchorHead`s);
- a list item ("- ", "* ", "1. ") that follows a paragraph line, or an item of another indentation, gets the blank
  line reST needs before it, and the paragraph that follows a list gets one after it;
- any other block indented under a paragraph line (a formula, a command) becomes a literal block.

Nothing else changes: the text is the docstring's own. The code is not touched.
"""

from __future__ import annotations

import re

from sphinx.application import Sphinx

# reST's inline markup recognition rules: what may stand right before a start-string and right after an end-string
# (docutils' "simple inline markup" rules, ASCII part).
_BEFORE_OK = set(" \t-:/'\"<([{")
_AFTER_OK = set(" \t-.,:;!?\\/'\")]}>")
_CODE_SPAN = re.compile(r"(?<!`)`([^`]+?)`(?!`)")
_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])(\s+)\S")


def _literal(match: re.Match[str]) -> str:
    text, start, end = match.string, match.start(), match.end()
    inner = match.group(1)
    if inner != inner.strip():  # reST literals cannot start or end with a space: keep the text as it is
        return match.group(0)
    before = "" if start == 0 or text[start - 1] in _BEFORE_OK or text[start - 1] == "\n" else "\\ "
    after = "" if end == len(text) or text[end] in _AFTER_OK or text[end] == "\n" else "\\ "
    return f"{before}``{inner}``{after}"


def code_spans(text: str) -> str:
    """Turn Markdown code spans into reST inline literals."""
    return _CODE_SPAN.sub(_literal, text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def separate_blocks(lines: list[str]) -> list[tuple[str, bool]]:
    """Insert the blank lines reST needs around lists, and make other indented blocks literal blocks.

    Returns the lines, each with whether it is inside a literal block (whose text must stay as it is)."""
    out: list[tuple[str, bool]] = []
    item_indent: int | None = None  # the indentation of the current list's items; None outside a list
    text_indent = 0  # where the current item's text starts: its continuation lines' indentation
    literal_indent: int | None = None  # the indentation of the current literal block; None outside one
    for line in lines:
        if not line.strip():
            out.append((line, literal_indent is not None))
            continue
        previous = out[-1][0] if out else ""
        if literal_indent is not None:
            if _indent(line) >= literal_indent:
                out.append((line, True))
                continue
            literal_indent = None
            if previous.strip():
                out.append(("", False))
                previous = ""
        item = _ITEM.match(line)
        if item:
            indent = len(item.group(1))
            if previous.strip() and indent != item_indent:
                out.append(("", False))
            item_indent = indent
            text_indent = indent + len(item.group(2)) + len(item.group(3))
        else:
            # the indentation of the paragraph this line would continue: an item's text, or the previous line's
            paragraph_indent = text_indent if item_indent is not None else _indent(previous)
            if previous.strip() and _indent(line) > paragraph_indent:
                # a block indented under a paragraph line (a formula, a command): a literal block
                out.extend([("", False), (" " * paragraph_indent + "::", False), ("", False)])
                literal_indent = _indent(line)
                out.append((line, True))
                continue
            if item_indent is not None and _indent(line) < text_indent:
                if previous.strip():  # the list has ended: a paragraph follows
                    out.append(("", False))
                item_indent = None
            # else: a continuation line of the paragraph (or of the current item)
        out.append((line, False))
    return out


def process_docstring(app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    """``autodoc-process-docstring``: rewrite `lines` in place."""
    if not lines:
        return
    rewritten: list[str] = []
    text: list[str] = []  # a run of lines outside literal blocks, converted together (a code span may wrap)
    for line, literal in separate_blocks(lines):
        if literal:
            if text:
                rewritten.extend(code_spans("\n".join(text)).split("\n"))
                text = []
            rewritten.append(line)
        else:
            text.append(line)
    if text:
        rewritten.extend(code_spans("\n".join(text)).split("\n"))
    lines[:] = rewritten


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("autodoc-process-docstring", process_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
