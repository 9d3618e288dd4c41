"""evaluate.py report=DIR: turn a results folder's records into the paper-style table and the Pareto plot.

Reads DIR/records.jsonl and every records.jsonl under DIR (a sweep's jobs), writes `table.md`, `table.csv` and
`pareto.png` (and `contrasts.md` where two compressed rows of one dataset, model, device and runtime started from
the same baselines: each pair of them against each other, paired by seed; and `recipes.md` where records of recipes
are: each recipe's waterfall over its seeds, then each pair of recipes run on the same data, model and device
against each other, paired by seed; and `findings.md` where the records hold the benchmark paper's grid: its
findings one by one against what the records measured) into DIR/report/ (each atomically: written beside and
renamed over, so a killed run leaves the old file or the new one), prints the table and the contrasts, and with
logger=wandb logs the table as a W&B Table with the plot as an Image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from edgecomp.config import build
from edgecomp.pipelines.common import write_atomically
from edgecomp.report.findings import findings_table
from edgecomp.report.pareto import plot_pareto
from edgecomp.report.recipe_contrast import recipe_contrasts
from edgecomp.report.records import load_records
from edgecomp.report.row_contrast import row_contrasts
from edgecomp.report.table import Row, build_rows
from edgecomp.report.table_format import CSV_COLUMNS, csv_values, to_csv, to_markdown
from edgecomp.report.waterfall import recipe_waterfalls

REPORT_FOLDER = "report"
TABLE_MD, TABLE_CSV, PARETO_PNG, RECIPES_MD = "table.md", "table.csv", "pareto.png", "recipes.md"
CONTRASTS_MD, FINDINGS_MD = "contrasts.md", "findings.md"


@dataclass(frozen=True)
class Report:
    source: Path  # the results folder (or records file) that was read
    folder: Path  # where the files were written
    rows: list[Row]
    markdown: str
    waterfalls: list[str]
    contrasts: list[str]  # recipes against each other, stage by stage (edgecomp.report.recipe_contrast)
    row_contrasts: list[str]  # the table's compressed rows against each other (edgecomp.report.row_contrast)
    findings: str | None = None  # the benchmark paper's findings against the records (edgecomp.report.findings)

    def path(self, name: str) -> Path:
        return self.folder / name


def write_report(source: str | os.PathLike) -> Report:
    """Read the records at or under `source`, write the table (Markdown, CSV) and the Pareto plot into
    `<source>/report/` (next to the file if `source` is one records file), and where there are any, the compressed
    rows against each other (`contrasts.md`), the recipes (`recipes.md`) and the benchmark paper's findings
    (`findings.md`)."""
    source = Path(source)
    records = load_records(source)
    rows = build_rows(records)
    folder = (source.parent if source.is_file() else source) / REPORT_FOLDER
    markdown = to_markdown(rows)
    waterfalls = recipe_waterfalls(records)
    contrasts = recipe_contrasts(records)
    rows_against_each_other = row_contrasts(records)
    findings = findings_table(records)
    # Everything is rendered before the first file is written: bad input leaves no partial report behind.
    outputs = {TABLE_MD: markdown.encode(), TABLE_CSV: to_csv(rows).encode(), PARETO_PNG: plot_pareto(rows)}
    if rows_against_each_other:
        outputs[CONTRASTS_MD] = "\n".join(rows_against_each_other).encode()
    if findings:
        outputs[FINDINGS_MD] = findings.encode()
    if waterfalls:
        outputs[RECIPES_MD] = "\n".join(waterfalls + contrasts).encode()
    for name, data in outputs.items():
        write_atomically(folder / name, data)
    return Report(source, folder, rows, markdown, waterfalls, contrasts, rows_against_each_other, findings)


def _is_wandb(logger_cfg: Any) -> bool:
    from hydra.utils import get_object

    from edgecomp.tracking.loggers import WandbLogger

    target = OmegaConf.select(logger_cfg, "_target_") if isinstance(logger_cfg, DictConfig) else None
    if not target:
        return False
    built = get_object(target)
    return isinstance(built, type) and issubclass(built, WandbLogger)


def log_report(logger_cfg: Any, report: Report) -> None:
    """logger=wandb: one W&B run (with the configured settings: offline by default, same project and save_dir)
    holding the table as a wandb.Table of the CSV's raw numbers and the plot as a wandb.Image; finished at the end.
    Other loggers have nowhere to put a table: they are skipped."""
    if not _is_wandb(logger_cfg):
        return
    import wandb

    from edgecomp.tracking.loggers import close_logger

    # The logger config names runs after one model and seed; a report covers many, so it gets a name of its own.
    logger = build(logger_cfg, name=f"report-{report.source.name}", job_type="report")
    try:
        table = wandb.Table(columns=list(CSV_COLUMNS), data=[csv_values(row) for row in report.rows])
        logger.experiment.log({"report/table": table, "report/pareto": wandb.Image(str(report.path(PARETO_PNG)))})
    finally:
        close_logger(logger)  # wandb.finish()


def run(cfg: DictConfig) -> Report:
    report = write_report(cfg.report)
    print(f"\nedgecomp report: {len(report.rows)} rows from {report.source}\n", flush=True)
    print(report.markdown, flush=True)
    for table in report.row_contrasts + report.waterfalls + report.contrasts + [report.findings or ""]:
        if table:
            print(table, flush=True)
    written = (
        TABLE_MD,
        TABLE_CSV,
        PARETO_PNG,
        *((CONTRASTS_MD,) if report.row_contrasts else ()),
        *((RECIPES_MD,) if report.waterfalls else ()),
        *((FINDINGS_MD,) if report.findings else ()),
    )
    print(f"wrote {', '.join(str(report.path(n)) for n in written)}", flush=True)
    log_report(cfg.logger, report)
    return report
