"""CIFAR-10 for a machine the data folder does not travel to: the images a run reads, in their places.

    python tools/device/carry_cifar.py pack .data/cifar10.tar.gz --subset 1000,500 --first 2000
    python tools/device/carry_cifar.py check --data-dir DIR --subset 1000,500 --first 2000

`pack` writes a gzipped `cifar-10-batches-py` folder in which the images of the given stratified
training + validation subsets (`--subset TRAIN,VAL` with `--seed`, drawn as a search or
`nas-cntk benchmark` draws them) and the first `--first` training images (those
benchmarks/kernel_speed.py times) keep their pixels and every other image is black. All labels are
kept, so the stratified draws select the same images; the test split is empty, so a run that reads
it fails instead of scoring black images. A few MB instead of 180: unpack it where the run is and
point NAS_CNTK_DATA_DIR at it. `check` (run there, before the work) says whether the folder holds
every image that subsets and count read, as a run with other sizes would read black images.
"""
from __future__ import annotations

import argparse
import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np

from nas_cntk.data import FOLDER, TEST_FILES, TRAIN_FILES, load_cifar10, resolve_data_dir, validation_split


def kept(labels: np.ndarray, subsets: list[tuple[int, int]], seed: int, first: int) -> np.ndarray:
    """Which training images the subsets and the first ``first`` images are: a mask over the split."""
    keep = np.zeros(len(labels), dtype=bool)
    keep[:first] = True
    for train, val in subsets:
        for indices in validation_split(labels, train, val, seed):
            keep[indices] = True
    return keep


def _add(tar: tarfile.TarFile, name: str, images: np.ndarray, labels: np.ndarray) -> None:
    """One batch file as the official archive has it: a pickled dict of uint8 rows and a label list."""
    data = pickle.dumps({"batch_label": name, "labels": labels.tolist(), "data": np.ascontiguousarray(images)})
    info = tarfile.TarInfo(f"{FOLDER}/{name}")
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def pack(out: Path, keep: np.ndarray, images: np.ndarray, labels: np.ndarray) -> None:
    rows = np.where(keep[:, None], images.reshape(len(images), -1), 0).astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")  # a killed run leaves nothing that looks complete
    with tarfile.open(partial, "w:gz") as tar:
        for name, part in zip(TRAIN_FILES, np.array_split(np.arange(len(rows)), len(TRAIN_FILES))):
            _add(tar, name, rows[part], labels[part])
        _add(tar, TEST_FILES[0], np.zeros((0, rows.shape[1]), np.uint8), np.zeros(0, np.int64))
    partial.replace(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("pack", "check"))
    parser.add_argument("out", nargs="?", type=Path, help="pack: the .tar.gz to write")
    parser.add_argument("--data-dir", help="CIFAR-10 (default: $NAS_CNTK_DATA_DIR)")
    parser.add_argument("--subset", action="append", default=[], metavar="TRAIN,VAL",
                        help="a training + validation subset a run draws (repeat for several)")
    parser.add_argument("--seed", type=int, default=0, help="the subsets' seed (default 0)")
    parser.add_argument("--first", type=int, default=0, metavar="N", help="also the first N training images")
    args = parser.parse_args()
    if args.action == "pack" and args.out is None:
        parser.error("pack needs the file to write")
    subsets = [tuple(map(int, text.split(","))) for text in args.subset]
    images, labels = load_cifar10("train", args.data_dir)
    keep = kept(labels, subsets, args.seed, args.first)
    if args.action == "pack":
        pack(args.out, keep, images, labels)
        print(f"{args.out}: {keep.sum()} of {len(keep)} training images, {args.out.stat().st_size / 2**20:.1f} MiB")
        return 0
    black = np.count_nonzero(keep & ~images.reshape(len(images), -1).any(axis=1))
    where = resolve_data_dir(args.data_dir, download=False)
    if black:
        print(f"{where}: {black} of the {keep.sum()} images these runs read are black: it was packed for other "
              f"subsets; pack it again with these --subset and --first", file=sys.stderr)
        return 1
    print(f"{where}: all {keep.sum()} images these runs read are there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
