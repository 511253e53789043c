"""Held-out queries for the demo catalogue: a fourth study of each style, which the catalogue (studies 0-2) never holds.

    python bench/demo_held_out.py held-out      # then: tda eval lds ... --query-audio held-out

Each is 2.048 s (one demo segment) from 1 s into the study, with its style's prompt, written as DIR/queries.csv
(path, prompt, seconds_start, seconds_total) for `tda eval lds` / `tda eval counterfactual --query-audio`.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import soundfile as sf

from tda_plugin.demo.synth import STYLES, render_track


def main(out: Path, sample_rate: int = 8000) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for style in STYLES[:8]:
        clip = render_track(style, 3, 8.0, sample_rate, 0)[sample_rate:sample_rate + 16384]
        sf.write(out / f"{style.name}_held.wav", clip, sample_rate, subtype="PCM_16")
        rows.append({"path": f"{style.name}_held.wav", "prompt": style.prompt, "seconds_start": 1.0, "seconds_total": 8.0})
    with (out / "queries.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "held-out"))
