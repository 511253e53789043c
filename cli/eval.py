"""`tda eval ...`: the evaluation experiments (docs/evaluation.md). Each writes JSON, Markdown and PNGs to --out."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.text import Text

from tda_plugin.settings import SUBSETS, AttributeSettings, IndexSettings, UnlearnSettings

from .console import write_data
from .errors import err, guarded

eval_app = typer.Typer(help="Evaluate attribution: self-influence, grid search, similarity, counterfactuals, LDS, prefilter.",
                       no_args_is_help=True)

IndexArg = Annotated[Path, typer.Argument(help="index directory")]
OutDir = Annotated[Path, typer.Option("--out", help="directory for the JSON, Markdown and PNG results")]
Targets = Annotated[int, typer.Option(help="training segments unlearned (k-means over embeddings picks them)")]
TopK = Annotated[int, typer.Option("-k", help="k of top-k similarity and precision@k")]
BatchSize = Annotated[int, typer.Option(help="segment-draws per forward pass")]
RelativeStep = Annotated[float, typer.Option(help="first step's size rms(Δ)/rms(θ)")]
UnlearnDraws = Annotated[int, typer.Option(help="draws averaged for the query gradient")]
Adapter = Annotated[Optional[str], typer.Option(help="model family whose training recipe is used (see `tda plugins`)")]
QueryAudio = Annotated[Optional[Path], typer.Option(
    help="held-out audio: DIR/queries.csv (or a catalogue's tracks.csv) with path,prompt[,seconds_start,seconds_total]")]
Methods = Annotated[Optional[list[str]], typer.Option(
    "--method", help="methods to compare (shell patterns, repeatable; docs/experiments/ground-truth-by-retraining.md lists them)")]
Cache = Annotated[Optional[Path], typer.Option(help="trained-model cache shared between runs (default: OUT/models)")]
EstimateOnly = Annotated[bool, typer.Option(help="print the time estimate and stop")]


def _open(index: Path, device: str) -> Any:
    from tda_plugin.attributor import Attributor

    return Attributor.from_index(index, device=device)


def _finish(out_dir: Path, name: str, doc: dict[str, Any], md: str, plots: dict[str, Any]) -> None:
    from tda_plugin.experiments.outputs import write_outputs

    paths = write_outputs(out_dir, name, doc, md, plots)
    write_data(md + "\n")
    err.print(Text(f"wrote {', '.join(str(p) for p in paths)}"), soft_wrap=True)


@eval_app.command("self-influence")
@guarded
def self_influence(
    index: IndexArg,
    out_dir: OutDir = Path("eval-out"),
    targets: Targets = 16,
    subset: Annotated[Optional[list[str]], typer.Option(help=f"parameter subset(s) to compare ({', '.join(SUBSETS)}); default: all")] = None,
    k: TopK = 10,
    relative_step: RelativeStep = UnlearnSettings.relative_step,
    unlearn_draws: UnlearnDraws = UnlearnSettings.unlearn_draws,
    batch_size: BatchSize = 64,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Unlearn training segments themselves: does each rank itself first (the paper's R)?"""
    from tda_plugin.experiments.self_influence import Setting, render, self_influence_doc

    base = UnlearnSettings(relative_step=relative_step, unlearn_draws=unlearn_draws)
    grid = [Setting({"subset": s}, replace(base, subset=s)) for s in (subset or list(SUBSETS))]
    doc = self_influence_doc(_open(index, device), grid, targets, k, batch_size)
    _finish(out_dir, "self-influence", doc, *render(doc))


@eval_app.command("grid")
@guarded
def grid(
    index: IndexArg,
    grid_file: Annotated[Path, typer.Option("--grid", help="TOML file: a list of values per axis (docs/evaluation.md)")],
    out_dir: OutDir = Path("eval-out"),
    targets: Targets = 8,
    k: TopK = 10,
    batch_size: BatchSize = 64,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """The paper's hyperparameter grid: self-influence per point and the consistency between points."""
    from tda_plugin.experiments.grid import grid_doc, points, read_grid, render_grid

    doc = grid_doc(_open(index, device), points(read_grid(grid_file)), targets, k, batch_size)
    _finish(out_dir, "grid", doc, *render_grid(doc))


@eval_app.command("compare")
@guarded
def compare(
    index: IndexArg,
    queries: Annotated[Path, typer.Option(help="folder of generated clips (prompts from <clip>.credits.json)")],
    out_dir: OutDir = Path("eval-out"),
    relative_step: RelativeStep = UnlearnSettings.relative_step,
    unlearn_draws: UnlearnDraws = UnlearnSettings.unlearn_draws,
    batch_size: BatchSize = 64,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Unlearning scores against similarity scores of every embedder, for generated clips."""
    from tda_plugin.experiments.compare import compare_doc, find_queries, render_compare

    settings = AttributeSettings(UnlearnSettings(relative_step=relative_step, unlearn_draws=unlearn_draws),
                                 candidates="all", batch_size=batch_size)
    doc = compare_doc(_open(index, device), find_queries(queries), settings)
    _finish(out_dir, "compare", doc, *render_compare(doc))


@eval_app.command("prefilter")
@guarded
def prefilter(
    index: IndexArg,
    out_dir: OutDir = Path("eval-out"),
    queries: Annotated[Optional[Path], typer.Option(help="folder of generated clips (prompts from their stored credits)")] = None,
    noisy_copies: Annotated[int, typer.Option(help="covering training segments + 20 dB noise as further queries")] = 16,
    fractions: Annotated[str, typer.Option(help="M as comma-separated fractions of N")] = "0.01,0.02,0.05,0.1,0.2",
    sketch_dims: Annotated[str, typer.Option(help="gradient-sketch sizes to compare")] = "4096",
    batch_size: BatchSize = 64,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Recall of the exhaustive top-k inside each embedder's prefiltered top-M (choose --candidates from it)."""
    from tda_plugin.experiments.prefilter import prefilter_doc, render_prefilter

    try:
        fracs = [float(f) for f in fractions.split(",")]
        dims = [int(d) for d in sketch_dims.split(",")]
    except ValueError:
        raise typer.BadParameter("comma-separated numbers, e.g. 0.01,0.05") from None
    if queries is None and noisy_copies < 1:
        raise typer.BadParameter("give --queries, --noisy-copies, or both")
    doc = prefilter_doc(_open(index, device), queries, noisy_copies, fracs,
                        AttributeSettings(candidates="all", batch_size=batch_size), dims)
    _finish(out_dir, "prefilter", doc, *render_prefilter(doc))


@eval_app.command("counterfactual")
@guarded
def counterfactual(
    corpus: Annotated[Path, typer.Argument(help="catalogue directory with tracks.csv (e.g. demo-out/catalogue)")],
    out_dir: OutDir = Path("eval-out/counterfactual"),
    adapter: Annotated[str, typer.Option(help="model family whose training recipe is used (see `tda plugins`)")] = "stable-audio",
    queries: Annotated[int, typer.Option(help="query clips generated by the reference model")] = 16,
    query_audio: QueryAudio = None,
    k: Annotated[str, typer.Option("--k", help="comma-separated numbers of segments removed")] = "2,8",
    steps: Annotated[int, typer.Option(help="training steps of the reference (and of every model retrained from scratch)")] = 1500,
    seed: Annotated[int, typer.Option(help="seed of initialisation, training and generation (the first training seed)")] = 0,
    seeds: Annotated[int, typer.Option(help="training seeds per removal (seed, seed+1, ...), each with its own reference")] = 2,
    random_sets: Annotated[int, typer.Option(help="random removal sets per K, shared by every query")] = 4,
    finetune_steps: Annotated[int, typer.Option(
        help="F: fine-tune the reference F steps with and without the removed segments; 0: retrain from scratch")] = 50,
    method: Methods = None,
    draws: Annotated[int, typer.Option(help="loss draws per segment of the reference's index")] = IndexSettings.draws,
    loss_draws: Annotated[int, typer.Option(help="draws of each query's loss under each model")] = 64,
    regenerate: Annotated[bool, typer.Option(help="also regenerate each clip with each model (Δclip)")] = True,
    cache: Cache = None,
    estimate_only: EstimateOnly = False,
) -> None:
    """Retrain without each method's top-K segments (and K random ones): does the query's loss rise, beyond the noise?"""
    from tda_plugin.experiments.counterfactual import Counterfactual, Plan, render
    from tda_plugin.experiments.retraining import announce

    try:
        ks = tuple(int(v) for v in k.split(","))
    except ValueError:
        raise typer.BadParameter("comma-separated integers, e.g. 2,8") from None
    plan = Plan(corpus, out_dir, adapter, queries, ks, steps, seed, draws, seeds, random_sets, query_audio, finetune_steps,
                loss_draws, tuple(method or ("unlearning", "similar:*")), regenerate, cache)
    run = Counterfactual(plan)
    announce("counterfactual evaluation", run.estimate())
    if estimate_only:
        return
    doc = run.run()
    _finish(out_dir, "counterfactual", doc, *render(doc))


@eval_app.command("lds")
@guarded
def lds(
    target: Annotated[Path, typer.Argument(help="an index (its model is the reference) or a catalogue with tracks.csv")],
    out_dir: OutDir = Path("eval-out/lds"),
    adapter: Adapter = None,
    subset_models: Annotated[int, typer.Option(help="random training subsets, one model each (per seed)")] = 32,
    alpha: Annotated[float, typer.Option(help="fraction of the segments each subset keeps")] = 0.5,
    seeds: Annotated[int, typer.Option(help="training seeds per subset; the query loss is averaged over them")] = 1,
    steps: Annotated[int, typer.Option(help="training steps of every model (train the index's model alike)")] = 400,
    seed: Annotated[int, typer.Option(help="seed of subsets, initialisation, training and generation")] = 0,
    draws: Annotated[int, typer.Option(help="loss draws per segment of the reference's index (catalogue target)")] = IndexSettings.draws,
    loss_draws: Annotated[int, typer.Option(help="draws of each query's loss under each subset model")] = 64,
    queries: Annotated[int, typer.Option(help="query clips generated by the reference model")] = 16,
    query_audio: QueryAudio = None,
    method: Methods = None,
    grid_files: Annotated[Optional[list[Path]], typer.Option(
        "--grid", help="TOML grid of unlearning settings (as `tda eval grid`; repeatable): each point is added as a method grid:<point>")] = None,
    cache: Cache = None,
    estimate_only: EstimateOnly = False,
) -> None:
    """Linear datamodeling score: how well each method's scores predict the query's loss under models trained on subsets."""
    from tda_plugin.experiments.grid import points, read_grid, register_points
    from tda_plugin.experiments.lds import Lds, Plan, render
    from tda_plugin.experiments.retraining import announce

    patterns = tuple(method or ("*",)) + tuple(name for g in grid_files or () for name in register_points(points(read_grid(g))))
    plan = Plan(target, out_dir, cache, adapter, subset_models, alpha, seeds, steps, seed, draws, loss_draws, queries,
                query_audio, patterns)
    run = Lds(plan)
    announce("LDS evaluation", run.estimate())
    if estimate_only:
        return
    doc = run.run()
    _finish(out_dir, "lds", doc, *render(doc))


@eval_app.command("artists")
@guarded
def artists(
    corpus: Annotated[Path, typer.Argument(help="catalogue directory with tracks.csv")],
    out_dir: OutDir = Path("eval-out/artists"),
    adapter: Annotated[str, typer.Option(help="model family whose training recipe is used (see `tda plugins`)")] = "stable-audio",
    queries: Annotated[int, typer.Option(help="query clips generated by the reference model")] = 16,
    query_audio: QueryAudio = None,
    steps: Annotated[int, typer.Option(help="training steps of the reference")] = 1500,
    seed: Annotated[int, typer.Option(help="seed of initialisation, training and generation (the first fine-tuning seed)")] = 0,
    seeds: Annotated[int, typer.Option(help="fine-tuning seeds per artist (seed, seed+1, ...)")] = 2,
    finetune_steps: Annotated[int, typer.Option(help="steps each artist-less fine-tune (and each seed's full-data one) takes")] = 50,
    draws: Annotated[int, typer.Option(help="loss draws per segment of the reference's index")] = IndexSettings.draws,
    loss_draws: Annotated[int, typer.Option(help="draws of each query's loss under each model")] = 64,
    method: Methods = None,
    cache: Cache = None,
    estimate_only: EstimateOnly = False,
) -> None:
    """Fine-tune without each artist: does each method pay most the artist whose removal hurts the clip most?"""
    from tda_plugin.experiments.artists import Artists, Plan, render
    from tda_plugin.experiments.retraining import announce

    plan = Plan(corpus=corpus, out=out_dir, adapter=adapter, queries=queries, query_audio=query_audio, steps=steps,
                seed=seed, draws=draws, seeds=seeds, finetune_steps=finetune_steps, loss_draws=loss_draws,
                methods=tuple(method or ("*",)), cache=cache)
    run = Artists(plan)
    announce("per-artist ground truth", run.estimate())
    if estimate_only:
        return
    doc = run.run()
    _finish(out_dir, "artists", doc, *render(doc))
