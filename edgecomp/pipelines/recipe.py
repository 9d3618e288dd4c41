"""compress.py recipe=NAME: compressors applied one after another (prune -> distill -> quantize), each stage given
the previous stage's model, measured on the device and recorded.

`recipe.stages` is an ordered mapping of stage names to compressor configs (`conf/recipe/*.yaml` places them with
`/compressor@stages.<name>: <option>`; a stage's setting is overridden as `recipe.stages.<name>.<key>=<value>`). Each
stage writes one record: `recipe` {name, stage, index, stages, key}, `baseline` the original model's measurement
(cumulative change), `previous` the stage before's (this stage's change), and at the end the waterfall table
(`<recipe>-<variant>-recipe.md`, printed).

Distillation stages recover the previous stage's model (CompressionContext.warm_start); without a `teacher` in the
config their teacher is the unpruned baseline (its checkpoint, the model's own config).

Resuming: a stage's files live in `<paths.results>/stages/<run>/<index>-<stage>-<key>/`, the key hashing the stage's
config, the device and the fingerprint of the model it was given. A finished stage writes `stage.json` (its record
and where its model is) before its record is appended, so a recipe killed at any point and run again reuses every
finished stage (appending a record only if its line is missing) and redoes the one it was in: its final records are
those of an uninterrupted run. Two recipes sharing their first stages (a distillation and its fine-tuning control)
share those stages' work the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from edgecomp.compress.compressor import Compressor
from edgecomp.compress.context import CompressionContext, RunSpec
from edgecomp.compress.cost import measure_cost
from edgecomp.config import build, config_hash, run_id
from edgecomp.errors import ConfigError
from edgecomp.evaluate.artifact import ExportedModel
from edgecomp.evaluate.record import MeasuredSide, Record, StageVsBaseline, read_records
from edgecomp.lit import distributed
from edgecomp.lit.training import WEIGHTS
from edgecomp.models.checkpoint import load_model, load_state_dict
from edgecomp.models.fingerprint import weights_fingerprint
from edgecomp.models.modelopt_artifact import save_with_architecture
from edgecomp.pipelines.common import Job, write_atomically
from edgecomp.pipelines.measure import build_record, measured_side
from edgecomp.report.comparison import vs_baseline
from edgecomp.report.waterfall import waterfall_table

log = logging.getLogger("edgecomp")
STAGE_DONE = "stage.json"
WATERFALL = "recipe.md"


@dataclass
class Stage:
    name: str
    config: DictConfig
    compressor: Compressor


@dataclass
class StageModel:
    """What a stage hands the next: the model, the file its weights are in, and the ModelOpt artifact its
    architecture comes from when a stage changed it (FastNAS), which a later stage's plain weights need."""

    model: nn.Module | ExportedModel
    weights: Path
    architecture: Path | None = None


def recipe_stages(cfg: DictConfig) -> list[Stage]:
    """The recipe's stages in order, each compressor built (its settings checked) from its config."""
    stages = cfg.recipe.get("stages") or {}
    if not stages:
        raise ConfigError(f"recipe={cfg.recipe.name} has no stages: give recipe.stages.<name> a compressor config")
    return [_built_stage(cfg.recipe.name, str(name), node) for name, node in stages.items()]


def _built_stage(recipe: str, name: str, node: DictConfig) -> Stage:
    """A stage with its compressor built; a setting it refuses is named with the stage it belongs to."""
    try:
        return Stage(name, node, build(node))
    except ConfigError as err:
        raise ConfigError(f"recipe={recipe}, stage '{name}': {err}") from err


def teacher_is_baseline(cfg: DictConfig) -> bool:
    """In a recipe without a `teacher`, a distillation stage's teacher is the unpruned baseline."""
    return cfg.get("teacher") is None


def stage_spec(cfg: DictConfig) -> RunSpec:
    """The run a stage's compressor checks: the run's, whose teacher, when it is the baseline, is the model."""
    spec = RunSpec.from_config(cfg)
    return dataclasses.replace(spec, teacher=spec.model) if teacher_is_baseline(cfg) else spec


def check_recipe(cfg: DictConfig) -> list[Stage]:
    """Everything that can be refused before any work: each stage's own check() of the run (stage_spec), and the
    chain: no stage after one that ends in a deployed file (quantization), no baseline teacher at another resolution.
    The stages' compressors, built once here, are the ones run_recipe runs."""
    stages = recipe_stages(cfg)
    spec = stage_spec(cfg)
    for index, stage in enumerate(stages):
        where = f"recipe={cfg.recipe.name}, stage {index} '{stage.name}' (compressor={stage.compressor.name})"
        earlier = next((s for s in stages[:index] if s.compressor.deploys_file), None)
        if earlier is not None:
            raise ConfigError(
                f"{where}: comes after stage '{earlier.name}' (compressor={earlier.compressor.name}), which ends in "
                "a deployed file (quantized ONNX) that no later stage can train, prune or quantize again: put "
                "quantization last"
            )
        if stage.compressor.replaces_network:
            raise ConfigError(
                f"{where}: it returns another network than it is given (a student of another architecture), whose "
                "weights no later stage, nor the recipe's records, could load into the model: distil into the model "
                "itself in a recipe (kd without `student`)"
            )
        scale = getattr(stage.compressor, "teacher_scale", 1.0)
        if teacher_is_baseline(cfg) and scale != 1:
            raise ConfigError(
                f"{where}: its teacher is the unpruned baseline (no `teacher` in the config), trained at the data's "
                f"resolution, but compressor.teacher_scale={scale:g}: set recipe.stages.{stage.name}.teacher_scale=1, "
                "or give a teacher (teacher=<model>) trained at that scale"
            )
        try:
            stage.compressor.check(spec)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from err
    return stages


def stages_dir(job: Job) -> Path:
    return Path(job.cfg.paths.results) / "stages" / run_id(job.config)


def stage_key(job: Job, stage: Stage, given: StageModel) -> str:
    """Everything a stage's result depends on: its config (resolved), the model it is given, the teacher, the run's
    training (what `run_id` names: data, seed, trainer, optimizer), the dataset as evaluated and the device and
    latency protocol it is measured with. Equal keys, equal work (and an equal record)."""
    config = job.config
    identity = {
        "stage": OmegaConf.to_container(stage.config, resolve=True),
        "input": weights_fingerprint(given.model) if isinstance(given.model, nn.Module) else str(given.weights),
        # no `teacher`: the unpruned baseline teaches, and the input's lineage already names it
        "teacher": config.get("teacher"),
        "run": run_id(config),
        "dataset": config["dataset"],
        "device": config["device"],
        "latency": config["latency"],
    }
    return config_hash(identity, keys=tuple(identity), length=10)


def recipe_variant(cfg: DictConfig) -> str:
    """A hash of the recipe's stages as configured: two variants of one recipe (other settings of a stage) are two
    waterfalls and two sets of rows in a report, never averaged together."""
    stages = OmegaConf.to_container(cfg.recipe.stages, resolve=True)
    return config_hash({"stages": stages}, keys=("stages",), length=8)


def _save_stage_model(
    job: Job, stage: Stage, output: nn.Module | ExportedModel, given: StageModel, folder: Path
) -> StageModel:
    """The stage's result on disk: a deployed file as it is; a network by its compressor's save(), except that the
    weights of a network pruned by an earlier stage are saved with that architecture (a ModelOpt artifact), so that
    the record's checkpoint loads on its own (`evaluate.py checkpoint=...`)."""
    if isinstance(output, ExportedModel):
        return StageModel(output, output.path, given.architecture)
    if given.architecture is not None and not stage.compressor.changes_architecture:
        path = save_with_architecture(output, job.new_model(), given.architecture, folder / WEIGHTS)
        return StageModel(output, path, path)
    weights = stage.compressor.save(output, folder / WEIGHTS)
    return StageModel(output, weights, weights if stage.compressor.changes_architecture else None)


def _load_stage_model(job: Job, weights: Path, architecture: Path | None) -> StageModel:
    """A stage's network from its files: the pruned architecture (and the weights saved with it) if a stage changed
    it, then the stage's own weights."""
    model = job.new_model()
    if architecture is not None:
        model = load_model(model, architecture)  # the pruned architecture (and the weights it was saved with)
    if architecture != weights:
        model.load_state_dict(load_state_dict(weights))
    return StageModel(model, weights, architecture)


def _baseline_measurement(job: Job, original: nn.Module, checkpoint: Path) -> MeasuredSide:
    """The original model measured on the device, once: a resumed recipe compares with the same measurement."""
    identity = {
        "weights": weights_fingerprint(original),
        "device": job.config["device"],
        "latency": job.config["latency"],
    }
    path = stages_dir(job) / f"baseline-{config_hash(identity, keys=tuple(identity), length=10)}.json"
    if path.exists():
        return json.loads(path.read_text())
    measured = measured_side(job.measure(original), checkpoint)
    write_atomically(path, json.dumps(measured).encode())
    return measured


def _published_keys(job: Job) -> set[tuple[str, str | None, str | None]]:
    """(recipe name, variant, stage key) of every recipe stage already in the results' records."""
    if not job.records_path.exists():
        return set()
    stages = [record["recipe"] for record in read_records(job.records_path) if record.get("recipe")]
    return {(stage["name"], stage.get("variant"), stage.get("key")) for stage in stages}


def _finished_stage(job: Job, done: Path, recipe_field: dict[str, Any]) -> tuple[StageModel | None, dict[str, Any]]:
    """A finished stage from its `stage.json`: the model it handed on (None after a deployed file, which nothing
    follows) and its record as this recipe's stage (possibly finished by another recipe that shares the stage)."""
    state = json.loads(done.read_text())
    given = None
    if not state["deployed_file"]:
        architecture = state["architecture"]
        given = _load_stage_model(job, Path(state["weights"]), Path(architecture) if architecture else None)
    return given, {**state["record"], "config": job.config, "recipe": recipe_field}


def run_recipe(job: Job, stages: list[Stage]) -> list[dict[str, Any]] | None:
    """The recipe's stages one after another. Under trainer=ddp every rank runs the stages that train; what is
    measured, saved and recorded is done by rank 0 (the others then load the stage's model from its files), and the
    other ranks stop before a stage that does not train (quantization) and after the last."""
    cfg = job.cfg
    name = str(cfg.recipe.name)
    names = [stage.name for stage in stages]
    variant = recipe_variant(cfg)
    checkpoint = Path(cfg.checkpoint or job.training.trained_checkpoint())
    original = load_model(job.new_model(), checkpoint)
    baseline = distributed.on_main(lambda: _baseline_measurement(job, original, checkpoint), "measuring the baseline")
    given: StageModel | None = StageModel(original, checkpoint)
    data: dict[str, Any] | None
    previous = baseline
    published = _published_keys(job)
    teacher_config = cfg.model if teacher_is_baseline(cfg) else cfg.teacher
    records: list[dict[str, Any]] = []
    for index, stage in enumerate(stages):
        if given is None:  # check_recipe refuses a stage after a deployed file; a resumed run cannot get here either
            raise RuntimeError(f"recipe={name}: stage '{stage.name}' has no model to work on")
        key = stage_key(job, stage, given)
        folder = stages_dir(job) / f"{index}-{stage.name}-{key}"
        recipe_field = {
            "name": name,
            "variant": variant,
            "stage": stage.name,
            "index": index,
            "stages": names,
            "key": key,
        }
        done = folder / STAGE_DONE
        if done.exists():
            log.info("recipe=%s: stage %d '%s' finished before, reusing %s", name, index, stage.name, folder)
            given, data = _finished_stage(job, done, recipe_field)
        else:
            if not stage.compressor.trains and not distributed.release_workers():
                return None  # trainer=ddp: what follows runs on rank 0 alone
            given, data = _run_stage(
                job, stage, given, previous, baseline, folder, recipe_field, checkpoint, teacher_config, original
            )
            if data is None:  # another DDP rank: the stage as rank 0 saved it
                given, data = _finished_stage(job, done, recipe_field)
        if distributed.is_main() and (name, variant, key) not in published:
            job.publish(Record.from_json(data), f"compress (recipe={name}, stage {index} '{stage.name}')")
            published.add((name, variant, key))
        records.append(data)
        previous = measured_side(data, data["checkpoint"])
    if not distributed.release_workers():
        return None
    table = waterfall_table(records)
    path = stages_dir(job) / f"{name}-{variant}-{WATERFALL}"
    write_atomically(path, table.encode())
    print(f"\n{table}\n(written to {path})", flush=True)
    return records


def _run_stage(
    job: Job,
    stage: Stage,
    given: StageModel,
    previous: MeasuredSide | None,
    baseline: MeasuredSide | None,
    folder: Path,
    recipe_field: dict[str, Any],
    checkpoint: Path,
    teacher_config: DictConfig,
    original: nn.Module,
) -> tuple[StageModel | None, dict[str, Any] | None]:
    """Compress `given` with the stage's compressor (in every DDP rank if it trains), then, in rank 0 alone, save,
    measure and record it and write its `stage.json`. Returns what the next stage gets and the record; (None, None)
    in the other ranks."""
    cfg = job.cfg
    model = given.model
    if isinstance(model, ExportedModel):  # check_recipe puts no stage after one that ends in a deployed file
        raise RuntimeError(f"stage '{stage.name}' is given a deployed file ({model.path}), which it cannot compress")
    datamodule, device, _, evaluator = job.measuring()
    context = CompressionContext(
        task=cfg.task,
        model_config=cfg.model,
        teacher_config=teacher_config,
        datamodule=datamodule,
        device=device,
        evaluator=evaluator,
        training=job.training,
        work_dir=folder,
        deploy_dir=job.deploy_dir,
        warm_start=True,
        teacher_checkpoint=checkpoint if teacher_is_baseline(cfg) else None,
    )
    folder.mkdir(parents=True, exist_ok=True)
    stage.compressor.prepare(context)
    with measure_cost() as cost:
        output = stage.compressor.compress(copy.deepcopy(model), context)

    def record_stage() -> tuple[StageModel, dict[str, Any]]:
        if previous is None or baseline is None:  # rank 0's, which runs this
            raise RuntimeError(f"stage '{stage.name}': recorded without the measurements of the baseline and before")
        compared_previous: MeasuredSide = previous
        previous_model: nn.Module | ExportedModel = model
        # A stage that deploys its result through another runtime than the device's (PTQ's ONNX Runtime file on an
        # eager device) is compared with its input deployed that way, never across runtimes.
        compared = stage.compressor.deploy_baseline(model, context)
        if isinstance(compared, ExportedModel) and compared.runtime.name != (previous.get("runtime") or {}).get(
            "runtime"
        ):
            compared_previous = measured_side(job.measure(compared, latency=False), given.weights)
            previous_model = compared
        saved = _save_stage_model(job, stage, output, given, folder)
        # What the next stage gets, and what is measured, is the stage's model as saved, loaded back: a resumed run
        # gets exactly that too (in memory a pruned model's parameters are in another order, say, which changes the
        # exported file's bytes though not its weights).
        if not isinstance(saved.model, ExportedModel):
            saved = _load_stage_model(job, saved.weights, saved.architecture)
        measured = job.measure(saved.model, latency=False)
        # The original, the stage before (where it is another model) and this stage timed against each other in
        # alternating rounds: the stage's latency and both of its ratios come from the one paired timing.
        timed = [original, *([previous_model] if previous_model is not original else []), saved.model]
        timing = job.time_deployed(timed)
        last = len(timed) - 1
        measured["latency_ms"] = timing.latency(last)
        record = build_record(job.config, device, measured, saved.weights)
        record.compressor = stage.compressor.name
        # `baseline` and `previous` stay as they were measured (a stage's `previous` is what the stage before
        # recorded); the ratios are the paired timing's.
        record.baseline = baseline
        record.previous = compared_previous
        record.training = job.trained_summary()  # the unpruned baseline's training
        record.compression = {**cost.as_record(), **stage.compressor.compression_fields()}
        stage_ratios: StageVsBaseline = {
            **vs_baseline(record.to_json(), timing.ratio(last, 0)),
            "latency_vs_previous": timing.ratio(last, last - 1).as_record(),
        }
        record.vs_baseline = stage_ratios
        record.recipe = recipe_field
        record.extra = stage.compressor.record_fields()
        record.validate()
        data = record.to_json()
        state = {
            "record": data,
            "deployed_file": isinstance(saved.model, ExportedModel),
            "weights": str(saved.weights),
            "architecture": str(saved.architecture) if saved.architecture else None,
        }
        write_atomically(folder / STAGE_DONE, json.dumps(state).encode())
        return saved, data

    result = distributed.on_main(record_stage, f"measuring and recording stage '{stage.name}'")
    return result if result is not None else (None, None)
