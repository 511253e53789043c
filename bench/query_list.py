"""Write a folder whose ``queries.csv`` lists query clips and their prompts (``--listed`` of bench/draw_reliability.py,
``--query-audio`` of ``tda eval lds|counterfactual``). The audio is not copied: the listing names it by absolute path.

    # the first 8 clips that `tda eval lds ... --queries 16` generated (saved under its OUT/queries/), with the
    # prompts they were generated with
    python bench/query_list.py rel/real-generated --generated eval-out/real-lds-ae3000/queries \
        --catalogue real/catalogue --first 8
    # the first 4 held-out excerpts of bench/real_catalogue.py
    python bench/query_list.py rel/real-held-out --listed real/queries --first 4

``--generated DIR``: the clips ``generated-<model>-<q>.wav`` that an experiment saved. Clip q was generated with the
q-th of the prompts spread evenly over the catalogue's captions (tda_plugin.experiments.retraining.spread_prompts,
for as many prompts as the run generated clips: ``--count``, default the number of clips of that model in DIR).
``--listed DIR``: the clips an existing ``DIR/queries.csv`` lists, with their prompts.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

from tda_plugin.catalog import read_catalog
from tda_plugin.experiments.retraining import spread_prompts

CLIP = re.compile(r"generated-(?P<model>[0-9a-f]+)-(?P<q>\d+)\.wav$")


def generated(folder: Path, catalogue: Path, count: int | None, model: str | None) -> list[tuple[Path, str]]:
    clips: dict[str, dict[int, Path]] = {}
    for wav in folder.glob("generated-*.wav"):
        m = CLIP.match(wav.name)
        if m:
            clips.setdefault(m["model"], {})[int(m["q"])] = wav
    if model is None:
        if len(clips) != 1:
            sys.exit(f"{folder}: clips of {len(clips)} models ({', '.join(sorted(clips)) or 'none'}); pick one with --model")
        model = next(iter(clips))
    found = clips.get(model) or sys.exit(f"{folder}: no generated-{model}-*.wav")
    prompts = spread_prompts(read_catalog(catalogue), count or len(found))
    return [(found[q].resolve(), prompts[q] or "") for q in sorted(found)]


def listed(folder: Path) -> list[tuple[Path, str]]:
    with (folder / "queries.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [((folder / r["path"]).resolve(), r.get("prompt") or "") for r in rows if r.get("path")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder to write queries.csv into (created if missing)")
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--generated", type=Path, help="an experiment's OUT/queries folder of generated clips")
    source.add_argument("--listed", type=Path, help="a folder with a queries.csv")
    ap.add_argument("--catalogue", type=Path, help="the catalogue the clips' model was trained on (--generated)")
    ap.add_argument("--count", type=int, help="how many clips the run generated (--generated; default: as found)")
    ap.add_argument("--model", help="the model fingerprint prefix in the clips' names, if DIR holds several")
    ap.add_argument("--first", type=int, default=0, help="keep the first N (0: all)")
    args = ap.parse_args()
    if args.generated and not args.catalogue:
        ap.error("--generated needs --catalogue (the prompts are spread over its captions)")
    rows = generated(args.generated, args.catalogue, args.count, args.model) if args.generated else listed(args.listed)
    rows = rows[: args.first] if args.first else rows
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "queries.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["path", "prompt"], *[[str(p), prompt] for p, prompt in rows]])
    print(f"{len(rows)} clips -> {args.out / 'queries.csv'}")


if __name__ == "__main__":
    main()
