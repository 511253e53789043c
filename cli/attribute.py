"""`tda attribute CLIPS_DIR_OR_FILES... --index INDEX`: attribute saved generations, a whole folder in one call.

Order of work: open the index (a damaged one fails here), resolve every clip's conditioning, decode and
check every clip (each bad one reported and skipped), load the model once, then attribute clip by clip
— each result goes to its sinks and to ``--json`` / ``--csv`` as soon as it exists, so an interruption
keeps what was finished. Exit code 0: all attributed; 3: at least one clip failed (each has its line on
stderr and ``"status": "error"`` in the JSON); 4: none failed but a plugin vetoed releasing one.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import typer
from rich.text import Text

from tda_plugin.settings import AttributeSettings, UnlearnSettings

from .console import err, out, say, write_data
from .errors import EXIT_INPUT, EXIT_VETOED, guarded
from .fields import settings_from
from .inputs import Clip
from .options import Device, device_name

log = logging.getLogger("tda_plugin.cli")

#: an estimate is printed for clips longer than this many index segments, or expected to take longer than this
LONG_WINDOWS = 2
LONG_SECONDS = 20.0
CSV_COLUMNS = ("path", "status", "error", "prompt", "prompt_from", "seconds_start", "seconds_total", "rank", "artist",
               "title", "license", "track_id", "score", "share")


def _candidates(value: str) -> int | str:
    if value == "all" or value.endswith("%"):
        return value  # a percentage is validated by AttributeSettings
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter("an integer, a percentage such as '5%', or 'all'") from None


def _key_values(pairs: list[str]) -> dict[str, str]:
    try:
        return dict(p.split("=", 1) for p in pairs)
    except ValueError:
        raise typer.BadParameter("--sink-option takes KEY=VALUE") from None


def _sinks(names: list[str] | None) -> list[str]:
    """``--sink`` values: known sink names, or ``none`` alone for no sink at all."""
    from tda_plugin.errors import TdaError, UnknownPluginError
    from tda_plugin.sinks import DEFAULT_SINKS, check_sinks

    if not names:
        return list(DEFAULT_SINKS)
    if "none" in names:
        if len(names) > 1:
            raise TdaError("--sink none means no sink at all; it cannot be combined with other sinks")
        return []
    try:
        check_sinks(names, have_file=True)  # a misspelt sink fails before any work
    except UnknownPluginError as exc:
        raise UnknownPluginError(f"{exc}; or 'none' for no sink") from None
    return names


def attribute_settings(params: Mapping[str, Any]) -> AttributeSettings:
    """The settings of a `tda attribute` call from its options: each option named like a field of
    :class:`UnlearnSettings` or :class:`AttributeSettings` sets it; ``--candidates`` (text: a count, a percentage or
    'all') and ``--shortlist`` (0: none) are converted on the way."""
    return settings_from(AttributeSettings, params, unlearn=settings_from(UnlearnSettings, params),
                         candidates=_candidates(params["candidates"]), shortlist=params["shortlist"] or None)


def attribute_clip(attributor: Any, clip: Clip, settings: AttributeSettings) -> Any:
    """The one place a clip is attributed: the audio :func:`.inputs.check` decoded and checked, released once handed
    over. ``clip.prompt`` None: no prompt is known, so under the default ``--conditioning auto`` it is attributed on
    the model's null branch (docs/method.md)."""
    audio, clip.audio = clip.audio, None
    assert audio is not None, "inputs.check decodes every clip it lets through"
    return attributor.attribute(audio, clip.sample_rate, prompt=clip.prompt, settings=settings, path=str(clip.path),
                                seconds_start=clip.seconds_start, seconds_total=clip.seconds_total, checked=clip.warnings)


@guarded
def attribute(
    ctx: typer.Context,
    audio: Annotated[list[Path], typer.Argument(metavar="CLIPS_DIR_OR_FILES",
                                                help="generated audio files, or folders of them (not recursive)")],
    index: Annotated[Path, typer.Option(help="index directory")],
    prompt: Annotated[Optional[str], typer.Option(help="the prompt the clips were generated with (all of them)")] = None,
    prompts: Annotated[Optional[Path], typer.Option(help="CSV with path,prompt[,seconds_start,seconds_total] per clip")] = None,
    top: Annotated[int, typer.Option(help="segments to report")] = 10,
    candidates: Annotated[str, typer.Option(help="candidates scored exactly: prefilter top-M, a percentage of the catalogue ('5%'), or 'all'")] = str(AttributeSettings.candidates),
    shortlist: Annotated[int, typer.Option(help="of the candidates, the best K of a first pass over --shortlist-draws draws get all draws (0: every candidate)")] = AttributeSettings.shortlist or 0,
    shortlist_draws: Annotated[int, typer.Option(help="draws of the shortlist's first pass")] = AttributeSettings.shortlist_draws,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the results as JSON here ('-' for stdout)")] = None,
    csv_out: Annotated[Optional[Path], typer.Option("--csv", help="write one row per credit as CSV here ('-' for stdout)")] = None,
    mode: Annotated[str, typer.Option(help="newton or ascent")] = UnlearnSettings.mode,
    alpha: Annotated[Optional[float], typer.Option(help="unlearning step size α (default: chosen from --relative-step)")] = None,
    relative_step: Annotated[float, typer.Option(help="with no --alpha: first step's size rms(Δ)/rms(θ)")] = UnlearnSettings.relative_step,
    steps: Annotated[int, typer.Option(help="ascent steps (newton: 1)")] = UnlearnSettings.steps,
    subset: Annotated[str, typer.Option(help="blocks, self_attn, cross_attn or cross_attn_kv")] = UnlearnSettings.subset,
    unlearn_draws: Annotated[int, typer.Option(help="draws averaged for the query gradient")] = UnlearnSettings.unlearn_draws,
    damping: Annotated[Optional[float], typer.Option(help="λ as a fraction of the mean Fisher (default: the index's)")] = None,
    ewc: Annotated[float, typer.Option(help="EWC weight in [0, 1] (ascent)")] = UnlearnSettings.ewc,
    normalize: Annotated[str, typer.Option(help="self: τ relative to each segment's sensitivity; none: raw τ")] = UnlearnSettings.normalize,
    mask_silence: Annotated[bool, typer.Option(help="mask silent frames out of the query loss")] = True,
    conditioning: Annotated[str, typer.Option(help="auto: gated when the clip has a prompt, else unconditional (audio on an "
                                                   "index without null-branch baselines); prompt: always "
                                                   "the prompt (empty if none); audio: the clip on the model's null branch, "
                                                   "the segments under their captions (the prompt is not read); "
                                                   "unconditional: clip and segments on the null branch; gated: the "
                                                   "top segments by audio, credited by the prompt")] = AttributeSettings.conditioning,
    track_credit: Annotated[str, typer.Option(help="a track's credit from its top segments' positive scores: max "
                                                   "(its best segment) or sum")] = AttributeSettings.track_credit,
    copies: Annotated[bool, typer.Option(help="also search the clip for near copies of catalogue tracks (transposed, "
                                              "re-timed, filtered or mixed), listed beside the credits")] = AttributeSettings.copies,
    seconds_start: Annotated[Optional[float], typer.Option(help="timing conditioning the clips were generated with "
                                                                "(default: as stored with each clip, else 0)")] = None,
    seconds_total: Annotated[Optional[float], typer.Option(help="timing conditioning (default: as stored with each clip, "
                                                                "else its length)")] = None,
    batch_size: Annotated[int, typer.Option(help="segment-draws per forward pass")] = 64,
    device: Device = "auto",
    ckpt: Annotated[Optional[Path], typer.Option("--ckpt", "--checkpoint", help="where the index's checkpoint is now, "
                                                 "if it moved (its fingerprint must still match)")] = None,
    model_config: Annotated[Optional[Path], typer.Option(help="where the index's model_config.json is now "
                                                              "(default: beside --ckpt)")] = None,
    sink: Annotated[Optional[list[str]], typer.Option(help="credit sink, repeatable: sidecar (default), tags, ledger, "
                                                           "one from a plugin, or none")] = None,
    ledger: Annotated[Optional[Path], typer.Option(help="credits ledger of the ledger sink (default: $TDA_LEDGER, "
                                                        "else ~/.local/share/tda-plugin/credits.sqlite)")] = None,
    tag_top: Annotated[int, typer.Option(help="credits written as readable text by the tags sink")] = 5,
    sink_option: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE for third-party sinks, repeatable")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing sidecar instead of keeping its credits in its history")] = False,
) -> None:
    """Attribute saved generations: who made the music in these clips? Credits go to the chosen sinks."""
    from tda_plugin import progress
    from tda_plugin.attributor import Attributor
    from tda_plugin.errors import TdaError
    from tda_plugin.index.store import Index
    from tda_plugin.sinks import SinkOptions

    from . import estimate as est
    from . import inputs

    # -- everything that can be checked before the model loads ---------------------------------------
    if json_out is not None and csv_out is not None and str(json_out) == str(csv_out) == "-":
        raise TdaError("--json - and --csv - would both write to stdout; send one of them to a file")
    settings = attribute_settings(ctx.params)
    sinks = _sinks(sink)
    options = settings_from(SinkOptions, ctx.params, extra=_key_values(sink_option or []))
    opened = Index(index)
    meta = opened.meta
    table = inputs.read_prompts(prompts) if prompts is not None else {}
    clips, folder = inputs.expand(audio)
    given = {"prompt": prompt, "seconds_start": seconds_start, "seconds_total": seconds_total}
    with progress.stage("checking clips", len(clips)) as advance:
        for clip in clips:
            if clip.error is None and inputs.check(clip, meta.sample_rate, meta.segment_samples):
                inputs.condition(clip, given, prompts, table)
            advance(1)
    for clip in clips:
        if clip.error:
            say("error:", "bold red", clip.error)
    todo = [c for c in clips if c.error is None]
    if table:
        unmatched = len(set(table) - {c.path.resolve() for c in clips})
        if unmatched:
            say("warning:", "yellow", f"{unmatched} row(s) of {prompts} name no clip given here")
    run = _Outputs(clips, json_out, csv_out, single=len(audio) == 1 and not folder)

    # -- the model, once; then clip by clip ----------------------------------------------------------
    if todo:
        with progress.stage("load model"):
            attributor = Attributor.from_index(opened, device=device_name(device), checkpoint=ckpt, model_config=model_config)
        estimates = _announce(attributor, todo, settings, est)
        with progress.stage("clips", len(todo)) as advance:
            for clip, e in zip(todo, estimates):
                with progress.expected(unlearn=e.unlearn_s):
                    _one(attributor, clip, settings, sinks, options, run)
                advance(1)
    run.write(final=True)
    failed = [c for c in clips if c.error]
    vetoed = [r for r in run.results.values() if r.get("vetoes")]
    done = len(clips) - len(failed)
    if len(clips) > 1 or failed:
        err.print(Text(f"{done} of {len(clips)} clip(s) attributed" + (f", {len(failed)} failed (see above)" if failed else "")),
                  soft_wrap=True)
    for r in vetoed:
        say("not released", "yellow", f"{r['query']['path']}: {'; '.join(r['vetoes'])}")
    if failed:
        raise typer.Exit(EXIT_INPUT)
    if vetoed:
        raise typer.Exit(EXIT_VETOED)


def _announce(attributor: Any, clips: list[Clip], settings: AttributeSettings, est: Any) -> list[Any]:
    """Say up front what is unusual about the clips (no prompt; far longer than a segment; slow), with an estimate;
    returns each clip's estimate."""
    meta = attributor.index.meta
    for clip in clips:
        kind = attributor.conditioning(settings, clip.prompt)
        if clip.prompt is None and settings.conditioning in ("auto", "prompt"):
            how = {"unconditional": "on the model's null branch", "audio": "from its audio alone (its step on the model's "
                   "null branch, the segments under their captions)"}.get(kind, "under an empty prompt")
            where = "none stored with the clip" if "prompt" in clip.sources else "no --prompt, no --prompts row, none stored with the clip"
            say("warning:", "yellow", f"{clip.path}: no prompt ({where}); attributed {how}. A prompted clip's "
                                      "credits depend on its prompt: pass the one it was generated with if you know it")
    row_s = est.row_seconds(attributor)
    estimates = [est.estimate(attributor, c.duration_s, settings, row_s) for c in clips]
    for clip, e in zip(clips, estimates):
        if e.windows > LONG_WINDOWS:
            say("note:", "cyan", f"{clip.path}: {clip.duration_s:.1f} s is {e.windows} windows of the index's "
                                 f"{meta.segment_seconds:.2f}-s segments (the model's training length); expect about "
                                 f"{est.seconds(e.total_s)} (unlearn {est.seconds(e.unlearn_s)}, score {est.seconds(e.score_s)})")
    total = sum(e.total_s for e in estimates)
    if total > LONG_SECONDS and (len(clips) > 1 or estimates[0].windows <= LONG_WINDOWS):
        one = estimates[0]
        say("note:", "cyan", f"{len(clips)} clips: expect about {est.seconds(total)} in all" if len(clips) > 1 else
            f"{clips[0].path}: expect about {est.seconds(total)} (unlearn {est.seconds(one.unlearn_s)}, "
            f"score {est.seconds(one.score_s)})")
    return estimates


def _one(attributor: Any, clip: Clip, settings: AttributeSettings, sinks: list[str], options: Any, run: "_Outputs") -> None:
    """Attribute one clip, write its credits, show its table; a failure is recorded on the clip, not raised."""
    from tda_plugin import progress
    from tda_plugin.copies.view import copies_table
    from tda_plugin.errors import IndexDamagedError, IndexMismatchError, TdaError
    from tda_plugin.report import artists_table, credits_table
    from tda_plugin.sinks import write_credits

    try:
        with progress.label(clip.path.name):
            result = attribute_clip(attributor, clip, settings).to_dict()
        result["query"]["conditioning_from"] = {k: clip.sources.get(k, "default") for k in ("prompt", "seconds_start", "seconds_total")}
        run.results[clip.path] = result
        for receipt in write_credits(result, clip.path, sinks, options):
            err.print(Text(f"{clip.path}: credits -> {receipt.sink}: {receipt.location}"), soft_wrap=True)
    except (IndexDamagedError, IndexMismatchError):
        raise  # the index, not the clip: every clip would fail alike (results so far are written)
    except TdaError as exc:
        clip.error = str(exc)
        say("error:", "bold red", clip.error)
    run.write()
    if clip.error is None and run.tables:
        with progress.paused():
            near = copies_table(result)
            if near is not None:
                out.print(near)
            out.print(credits_table(result, top=settings.top))
            out.print(artists_table(result))


class _Outputs:
    """``--json`` / ``--csv``: one document (or rows) per clip with its status, rewritten as results arrive."""

    def __init__(self, clips: list[Clip], json_out: Path | None, csv_out: Path | None, single: bool) -> None:
        self.clips, self.json_out, self.csv_out, self.single = clips, json_out, csv_out, single
        self.results: dict[Path, dict[str, Any]] = {}
        self.tables = "-" not in (str(json_out), str(csv_out))

    def documents(self) -> list[dict[str, Any]]:
        docs = []
        for clip in self.clips:
            result = self.results.get(clip.path)
            if clip.error is not None:  # a result may exist: attributed, but its sinks failed
                docs.append({"status": "error", "error": clip.error, **(result or {"query": {"path": str(clip.path)}})})
            elif result is not None:
                docs.append({"status": "vetoed" if result.get("vetoes") else "ok", **result})
        return docs

    def write(self, final: bool = False) -> None:
        """Files are rewritten (atomically) after every clip; stdout gets its document once, at the end."""
        from tda_plugin.atomic import write_text

        for target, render in ((self.json_out, self._json), (self.csv_out, self._csv)):
            if target is not None and str(target) == "-":
                if final:
                    write_data(render())
            elif target is not None:
                write_text(target, render())

    def _json(self) -> str:
        docs = self.documents()
        return json.dumps(docs[0] if self.single and len(docs) == 1 else docs, indent=2) + "\n"

    def _csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for doc in self.documents():
            query = doc.get("query", {})
            base = {"path": query.get("path"), "status": doc["status"], "error": doc.get("error", ""),
                    "prompt": query.get("prompt"), "prompt_from": query.get("conditioning_from", {}).get("prompt"),
                    "seconds_start": query.get("seconds_start"), "seconds_total": query.get("seconds_total")}
            rows = doc.get("credits") or [{}]
            for credit in rows:
                writer.writerow({**base, **{k: credit.get(k) for k in ("rank", "artist", "title", "license", "track_id",
                                                                        "score", "share")}})
        return buf.getvalue()
