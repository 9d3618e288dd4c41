"""Tables rendered from committed records, at every build.

Each folder `docs/records/<experiment>/` holds the `records.jsonl` an experiment wrote (copied from its results
folder) and nothing else; when the builder starts, edgecomp's own report (`python evaluate.py
report=docs/records/<experiment>/records.jsonl`, edgecomp.pipelines.report.write_report) turns it into
`docs/records/<experiment>/report/` (`table.md`, `recipes.md` where there are recipe records, `findings.md` for the
benchmark paper's grid, `pareto.png`; ignored by git), which the pages include (MyST's `{include}`). A figure in such a table is then computed from the records by the
code that reports every run, never typed by hand, and a change to the report's code shows in the pages.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

RECORDS = Path("records")  # relative to the docs folder
log = logging.getLogger(__name__)


def render_reports(app: Sphinx) -> None:
    from edgecomp.pipelines.report import write_report

    for records in sorted((Path(app.srcdir) / RECORDS).glob("*/records.jsonl")):
        report = write_report(records)
        log.info("record_reports: %s -> %s (%d rows)", records, report.folder, len(report.rows))


def setup(app: Sphinx) -> dict[str, bool]:
    app.connect("builder-inited", render_reports)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
