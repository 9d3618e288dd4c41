"""The config-groups reference page, generated from `conf/` at every build.

Every directory under `conf/` is a config group (`hydra/launcher` for `conf/hydra/launcher/`), every file in it an
option; the files at the top of `conf/` are the entry points' primary configs. Each option is listed with its file,
the class or function its `_target_` builds (linked to the API reference where that documents it) and the comment
lines the file starts with, which say what it is. Nothing is listed by hand: a new option is a new file, and the page
follows.

The page is written to `reference/config-groups.md` in the docs folder when the builder starts (so that Sphinx reads
it like any page), and only when its text changed. `describe_option` makes one option's entry: extend it there (for
example with the typed settings fields of a compressor's class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sphinx.application import Sphinx

PAGE = Path("reference") / "config-groups.md"  # relative to the docs folder; ignored by git
OPTION_SUFFIXES = (".yaml", ".yml", ".py")  # .py: MMDetection's own configs under conf/mmdet/

_TARGET = re.compile(r"^_target_:\s*([\w.]+)\s*(?:#.*)?$", re.MULTILINE)
_HYDRA_DIRECTIVE = re.compile(r"^@package\b")  # `# @package ...` is an instruction to Hydra, not a description
_CODE_SPAN = re.compile(r"(`[^`\n]+`)")
# What Markdown and MyST read as markup anywhere in a line, and what starts a block (a heading, a list, a quote, a
# MyST target or comment) at the start of one.
_INLINE_MARKUP = set("\\*_[]<>{}&|~$!`")
_BLOCK_START = re.compile(r"^(?:[#>+=%:(-]|\d+[.)])")


@dataclass(frozen=True)
class ConfigOption:
    """One file of a config group."""

    group: str  # "compressor", "hydra/launcher"; "" for the primary configs at the top of conf/
    name: str  # the file's stem: what `group=name` picks
    path: Path  # the file
    comment: tuple[str, ...]  # its leading comment lines, without the "#" and one space after it
    target: str | None  # its top-level `_target_`, if it has one

    @property
    def title(self) -> str:
        """How the option is picked: `group=name` for a YAML option, else the file itself."""
        if self.group and self.path.suffix in (".yaml", ".yml"):
            return f"{self.group}={self.name}"
        return self.path.name if not self.group else f"{self.group}/{self.path.name}"


def leading_comment(text: str) -> tuple[str, ...]:
    """The comment lines a file starts with (up to its first line that is not a comment), Hydra directives left out."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        body = stripped[1:]
        body = body[1:] if body.startswith(" ") else body
        if _HYDRA_DIRECTIVE.match(body):
            continue
        lines.append(body.rstrip())
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return tuple(lines)


def read_option(path: Path, group: str) -> ConfigOption:
    text = path.read_text(encoding="utf-8")
    target = _TARGET.search(text) if path.suffix in (".yaml", ".yml") else None
    return ConfigOption(group, path.stem, path, leading_comment(text), target.group(1) if target else None)


def config_groups(conf_dir: Path) -> dict[str, list[ConfigOption]]:
    """Every group of `conf_dir` (its relative folder path; "" for the top level) with its options, sorted."""
    groups: dict[str, list[ConfigOption]] = {}
    for path in sorted(conf_dir.rglob("*")):
        if not path.is_file() or path.suffix not in OPTION_SUFFIXES or "__pycache__" in path.parts:
            continue
        group = path.parent.relative_to(conf_dir).as_posix()
        group = "" if group == "." else group
        groups.setdefault(group, []).append(read_option(path, group))
    return dict(sorted(groups.items()))


def escape_markdown(text: str) -> str:
    """`text` as literal Markdown: what Markdown or MyST would read as markup escaped, except inside `code spans`."""
    parts = _CODE_SPAN.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a code span: kept as it is
            out.append(part)
        else:
            out.append("".join("\\" + c if c in _INLINE_MARKUP else c for c in part))
    escaped = "".join(out)
    start = _BLOCK_START.match(escaped)
    if start:  # "1. ...", "# ...", "- ...": escape the marker's last character, so that the line stays text
        end = start.end() - 1
        escaped = escaped[:end] + "\\" + escaped[end:]
    return escaped


def comment_markdown(comment: tuple[str, ...]) -> list[str]:
    """A leading comment as Markdown: its paragraphs as text, its indented lines (commands, formulas) as code."""
    out: list[str] = []
    paragraph: list[str] = []
    code: list[str] = []

    def flush() -> None:
        if paragraph:
            out.extend([escape_markdown(" ".join(paragraph)), ""])
            paragraph.clear()
        if code:
            indent = min(len(line) - len(line.lstrip()) for line in code)
            out.extend(["```text", *(line[indent:] for line in code), "```", ""])
            code.clear()

    for line in comment:
        if not line.strip():
            flush()
        elif line.startswith("  "):
            if paragraph:
                flush()
            code.append(line)
        else:
            if code:
                flush()
            paragraph.append(line.strip())
    flush()
    return out


def describe_option(option: ConfigOption, conf_dir: Path) -> list[str]:
    """The Markdown lines of one option's entry (below its heading). The place to add more about an option."""
    lines = [f"`{option.path.relative_to(conf_dir.parent).as_posix()}`"]
    if option.target:
        lines[0] += f", builds {{py:obj}}`{option.target}`"
    lines.append("")
    lines.extend(comment_markdown(option.comment) or ["(The file starts with no comment.)", ""])
    lines.extend(settings_table(option.target))
    return lines


def settings_class_of(target: str | None) -> type | None:
    """The typed settings class (edgecomp.settings.Settings) of what `target` builds, if it declares one
    (`settings_class`: every compressor)."""
    if not target:
        return None
    from hydra.utils import get_object

    try:
        built = get_object(target)
    except Exception:  # an optional extra's class (MMDetection) or a function: nothing to list
        return None
    settings = getattr(built, "settings_class", None)
    if settings is None:
        return None
    from edgecomp.settings import Settings  # noqa: I001 (only once a class declares settings)

    if not (isinstance(settings, type) and issubclass(settings, Settings)) or not settings.model_fields:
        return None
    return settings


_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}  # annotated_types' bounds, as a range reads


def _type_text(annotation: object) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("NoneType", "null")


def settings_rows(settings: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, what is expected) for every field of `settings`, nested settings as dotted keys."""
    from pydantic_core import PydanticUndefined

    from edgecomp.settings import Settings

    rows = []
    for name, field in settings.model_fields.items():
        key = prefix + name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Settings):
            rows.extend(settings_rows(annotation, key + "."))
            continue
        constraints = ", ".join(
            f"{symbol} {getattr(item, name)}"
            for item in field.metadata
            for name, symbol in _BOUNDS.items()
            if type(item).__name__ == name.capitalize()
        )
        kind = _type_text(annotation) + (f" ({constraints})" if constraints else "")
        default = "required" if field.default is PydanticUndefined and field.default_factory is None else field.default
        if field.default_factory is not None:
            default = field.default_factory()
        rows.append((key, kind, "null" if default is None else str(default), field.description or ""))
    return rows


def settings_table(target: str | None) -> list[str]:
    """The option's typed settings as a table (key, type and range, default, what is expected), where it has any:
    the same declaration that validates the config, so the table cannot fall behind it."""
    settings = settings_class_of(target)
    if settings is None:
        return []
    lines = [
        f"Settings ({{py:obj}}`{settings.__module__}.{settings.__qualname__}`; anything else is refused):",
        "",
        "| key | type | default | expected |",
        "|---|---|---|---|",
    ]
    for row in settings_rows(settings):
        lines.append("| " + " | ".join(escape_markdown(cell) for cell in row) + " |")
    return [*lines, ""]


def render_page(conf_dir: Path) -> str:
    lines = [
        "# Config groups",
        "",
        "Generated from `conf/` when these pages are built (`docs/_ext/config_groups.py`): every config group, each "
        "of its options, and the comment the option's file starts with. Pick an option with `group=option` on the "
        "command line (`python train.py --help` lists them too); what each group decides is in "
        "[Configuration](../configuration.md).",
        "",
    ]
    for group, options in config_groups(conf_dir).items():
        lines.extend([f"## {group or 'Primary configs'}", ""])
        if not group:
            lines.extend(["The entry points' configs, at the top of `conf/`; the groups below compose into them.", ""])
        for option in options:
            lines.extend([f"### `{option.title}`", ""])
            lines.extend(describe_option(option, conf_dir))
    return "\n".join(lines).rstrip() + "\n"


def write_page(app: Sphinx) -> None:
    docs = Path(app.srcdir)
    page = docs / PAGE
    text = render_page(Path(app.config.config_groups_dir))
    if not page.exists() or page.read_text(encoding="utf-8") != text:  # unchanged: keep its time, no re-read
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(text, encoding="utf-8")


def setup(app: Sphinx) -> dict[str, object]:
    app.add_config_value("config_groups_dir", "", "env")
    app.connect("builder-inited", write_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
