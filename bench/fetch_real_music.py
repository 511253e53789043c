"""Fetch the real-music catalogue: credited game soundtracks from two Debian packages.

    python bench/fetch_real_music.py DIR          # about 200 MB of downloads; needs apt-get and dpkg

Downloads the packages ``wesnoth-1.16-music`` (Battle for Wesnoth, GPL) and ``singularity-music``
(Endgame: Singularity, CC-BY-SA 3.0) with ``apt-get download`` (nothing is installed), unpacks
each with ``dpkg -x`` into ``DIR/<package>/`` and writes ``DIR/tracks.csv`` (path, title, artist, license,
source), the catalogue format of ``tda index build`` and ``tda demo --corpus``. The credits come from each
Ogg file's own tags (artist, or composer when there is no artist; title; license, or the package's licence
when the file names none); a file that names no artist or composer is left out. Rows are in a fixed order:
package by package, then by path. (The script behind the runs recorded in docs/ listed each folder's files
sorted but its subfolders in the file system's directory order; on the machine where this script was checked,
that put ``music/win/`` before ``music/lose/``. So the last three of the 56 rows (three tracks by one composer)
may be in another order than in those runs, and bench/real_catalogue.py then numbers their excerpts
differently (track_053 to track_055): the same audio, credits and held-out queries, in another order.)

The audio is GPL / CC-BY-SA: it is fetched when needed and never committed. A package already unpacked in
DIR is not downloaded again (``--force`` does). The .deb files go to a temporary folder that is deleted.
The catalogue the docs measure: 56 credited tracks by 11 composers, about 3.2 hours.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

#: package -> the licence of its files when their tags name none
PACKAGES = {"wesnoth-1.16-music": "GPL", "singularity-music": "CC-BY-SA-3.0"}
COLUMNS = ["path", "title", "artist", "license", "source"]


def download(packages: list[str], into: Path) -> None:
    """``apt-get download`` the packages into ``into``; refresh the package lists once if that fails."""
    cmd = ["apt-get", "download", *packages]
    if subprocess.run(cmd, cwd=into, capture_output=True, text=True).returncode == 0:
        return
    print("apt-get download failed; running apt-get update and trying again", file=sys.stderr)
    update = subprocess.run(["apt-get", "update"], capture_output=True, text=True)
    retry = subprocess.run(cmd, cwd=into, capture_output=True, text=True)
    if retry.returncode != 0:
        sys.exit(f"apt-get download {' '.join(packages)} failed:\n{retry.stderr.strip()}"
                 + (f"\n(apt-get update said: {update.stderr.strip()})" if update.returncode else ""))


def unpack(packages: list[str], dest: Path, force: bool) -> None:
    missing = [p for p in packages if force or not any((dest / p).rglob("*.ogg"))]
    if not missing:
        return
    with tempfile.TemporaryDirectory(prefix="tda-debs-") as tmp:
        download(missing, Path(tmp))
        for package in missing:
            debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
            if not debs:
                sys.exit(f"apt-get download left no {package}_*.deb")
            subprocess.run(["rm", "-rf", str(dest / package)], check=True)
            subprocess.run(["dpkg", "-x", str(debs[-1]), str(dest / package)], check=True)


def first_tag(tags, *keys: str) -> str:
    for key in keys:
        values = tags.get(key) if tags else None
        if values and str(values[0]).strip():
            return str(values[0]).strip()
    return ""


def credited_tracks(dest: Path, packages: list[str]) -> list[dict[str, str]]:
    import mutagen

    rows = []
    for package in packages:
        for ogg in sorted((dest / package).rglob("*.ogg"), key=lambda p: p.relative_to(dest).as_posix()):
            tags = mutagen.File(ogg).tags
            artist = first_tag(tags, "artist", "composer")
            if not artist:
                continue  # no credit to give: left out
            rows.append({"path": ogg.relative_to(dest).as_posix(), "title": first_tag(tags, "title") or ogg.stem,
                         "artist": artist, "license": first_tag(tags, "license") or PACKAGES[package],
                         "source": package})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", type=Path, help="folder to fill (created if missing)")
    ap.add_argument("--force", action="store_true", help="download and unpack again even if already unpacked")
    args = ap.parse_args()
    try:
        import mutagen  # noqa: F401  (checked before the download, not after)
    except ImportError:
        sys.exit("bench/fetch_real_music.py reads the credits from the files' tags with mutagen: pip install mutagen")
    packages = list(PACKAGES)
    args.dest.mkdir(parents=True, exist_ok=True)
    unpack(packages, args.dest, args.force)
    rows = credited_tracks(args.dest, packages)
    listing = args.dest / "tracks.csv"
    tmp = listing.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(listing)
    print(f"{len(rows)} credited tracks by {len({r['artist'] for r in rows})} artists -> {listing}")


if __name__ == "__main__":
    main()
