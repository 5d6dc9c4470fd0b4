"""Scores already computed, kept on disk by data setting and architecture hash.

The same architecture sampled twice (or by another study on the same data) is looked up instead
of recomputed. One small JSON file per score, written atomically, so that several worker
processes can share the cache and a killed process never leaves half a file behind. The folder
names the version of what a score holds, so that scores of an older version are not read as new.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from nas_cntk.scoring.regression import Score

VERSION = 2  # every score from one kernel over all scored images (version 1: two validation accuracies)


class JsonFiles:
    """One JSON object per key in a folder, each written atomically."""

    def __init__(self, directory: Path):
        self.directory = directory

    def get(self, key: str) -> dict | None:
        try:
            return json.loads((self.directory / f"{key}.json").read_text())
        except FileNotFoundError:
            return None

    def put(self, key: str, value: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.directory, suffix=".tmp", delete=False) as file:
            json.dump(value, file)
        os.replace(file.name, self.directory / f"{key}.json")


class ScoreCache:
    """The scores of one data setting, by its label (:attr:`nas_cntk.data.DataSettings.label`, or a rung's)."""

    def __init__(self, directory: str | Path, label: str):
        self.files = JsonFiles(Path(directory) / f"v{VERSION}" / label)

    @property
    def directory(self) -> Path:
        return self.files.directory

    def get(self, arch_hash: str) -> Score | None:
        values = self.files.get(arch_hash)
        return None if values is None else Score.from_dict(values)

    def put(self, score: Score) -> None:
        self.files.put(score.arch_hash, score.to_dict())
