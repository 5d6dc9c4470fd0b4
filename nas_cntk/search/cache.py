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

from nas_cntk.data import DataSettings
from nas_cntk.scoring.regression import Score

VERSION = 2  # every score from one kernel over all scored images (version 1: two validation accuracies)


class ScoreCache:
    def __init__(self, directory: str | Path, data: DataSettings):
        self.directory = Path(directory) / f"v{VERSION}" / data.label

    def _path(self, arch_hash: str) -> Path:
        return self.directory / f"{arch_hash}.json"

    def get(self, arch_hash: str) -> Score | None:
        try:
            return Score.from_dict(json.loads(self._path(arch_hash).read_text()))
        except FileNotFoundError:
            return None

    def put(self, score: Score) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.directory, suffix=".tmp", delete=False) as file:
            json.dump(score.to_dict(), file)
        os.replace(file.name, self._path(score.arch_hash))
