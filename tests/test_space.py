"""Search-space files: loading, validation errors, the networks they describe, and the score cache.

Built-in spaces load by name; staged choices build the described network; the grid sampler
enumerates every combination once; pooling below one pixel is an invalid candidate; malformed files
name the file and key. The NAS-Bench-201 cell space suggests exactly the benchmark's network for a
genotype through a real SQLite Optuna study, named by that genotype; its ops and cells per stage
come from the file; `fidelity:` data defaults yield to options and stay out of the digest,
cells_per_stage does not. Restricted to given cells, the TPE and random samplers propose only those,
and TPE still by its model. The cache round-trips a score and keeps data settings apart.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FixedTrial

import nas_cntk
from nas_cntk.data import DataSettings
from nas_cntk.description import nasbench201
from nas_cntk.errors import InvalidCandidate, NasCntkError, SpaceError
from nas_cntk.scoring.regression import KernelScores, Score
from nas_cntk.search.cache import ScoreCache
from nas_cntk.search.samplers import RestrictedCellSampler, make_sampler
from nas_cntk.search.space import CellSpace, ListSpace, StagedSpace, check_candidate, load_space

EXAMPLES = Path(__file__).resolve().parents[1] / "search_spaces" / "examples"


def space_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_builtin_spaces_load_by_name():
    default = load_space("default")
    assert isinstance(default, StagedSpace) and not default.finite  # weight/bias std are ranges
    paper = load_space("arora2019")
    assert isinstance(paper, ListSpace) and paper.finite
    assert sorted(a.hash for a in paper.architectures) == sorted(nas_cntk.load(f).hash for f in EXAMPLES.glob("*.json"))


def test_staged_choices_build_the_described_network(tmp_path: Path):
    space = load_space(space_file(tmp_path, "stages: [1, 2]\nlayers: {choices: [1, 2], per: stage}\n"
                                            "kernel: {choices: [1, 3, 5], per: layer}\nresidual: [false, true]\n"
                                            "readout: [flatten, gap]\nweight_std: {low: 1, high: 2}\n"))
    arch = space.suggest(FixedTrial({"residual": True, "stages": 2, "layers_stage1": 1, "kernel_stage1_layer1": 3,
                                     "layers_stage2": 2, "kernel_stage2_layer1": 5, "kernel_stage2_layer2": 1,
                                     "weight_std": 1.5, "bias_std": 0.0, "readout": "gap",
                                     "fix_first_and_readout": False}))
    assert arch.summary() == "conv3 relu pool2 [conv5 relu] [conv1 relu] | gap, weight_std 1.5"
    assert arch.spec["weight_std"] == 1.5 and arch.spec["layers"][3]["body"][0]["weight_std"] == 1.5


def test_grid_enumerates_every_combination_once(tmp_path: Path):
    space = load_space(space_file(tmp_path, "stages: [1, 2]\nlayers: 1\nkernel: {choices: [1, 3], per: stage}\n"
                                            "readout: [flatten, gap]\n"))
    study = optuna.create_study(sampler=make_sampler("grid", space, seed=0), direction="maximize")
    hashes = []
    study.optimize(lambda trial: hashes.append(space.suggest(trial).hash) or 0.0, n_trials=100)
    assert len(hashes) == len(set(hashes)) == (2 + 4) * 2  # stages 1: 2 kernels; stages 2: 2 x 2; two readouts


def test_pooling_below_one_pixel_is_an_invalid_candidate(tmp_path: Path):
    space = load_space(space_file(tmp_path, "stages: 3\nlayers: 1\nkernel: 3\nreadout: flatten\n"))
    arch = space.suggest(FixedTrial({"residual": False, "stages": 3, "layers": 1, "kernel": 3, "weight_std": 2**0.5,
                                     "bias_std": 0.0, "readout": "flatten", "fix_first_and_readout": False}))
    check_candidate(arch, 4)
    with pytest.raises(InvalidCandidate, match="below one pixel"):
        check_candidate(arch, 2)


@pytest.mark.parametrize("text, message", [
    ("stages: [1]\nlayers: 1\nkernel: [3, 4]\nreadout: gap\n", "kernel[1]: expected odd integers >= 1, got 4"),
    ("stages: [1]\nlayers: 1\nkernel: 3\nreadout: [gap, max]\n", "readout[1]: expected one of flatten, gap"),
    ("stages: [1]\nlayers: 1\nkernel: 3\n", "readout: missing"),
    ("stages: [1]\nlayers: 1\nkernel: 3\nreadout: gap\nwidth: 4\n", "width: unknown key"),
    ("stages: [1]\nlayers: {choices: [1], per: layer}\nkernel: 3\nreadout: gap\n",
     "layers.per: expected one of network, stage"),
    ("stages: {low: 1, high: 3}\nlayers: 1\nkernel: 3\nreadout: gap\n", "stages: a range is only allowed for"),
    ("stages: 1\nlayers: 1\nkernel: 3\nreadout: gap\nbias_std: {low: 1, high: 0}\n", "bias_std:"),
    ("stages: [1\n", "not valid YAML"),
    ("architectures: [missing.json]\n", "architectures[0]:"),
    ("stages: 1\nlayers: 1\nkernel: 3\nreadout: gap\nobjective: accuracy\n",
     "objective: unknown score or cost 'accuracy'"),
])
def test_malformed_space_names_file_and_key(tmp_path: Path, text: str, message: str):
    path = space_file(tmp_path, text)
    with pytest.raises(SpaceError) as error:
        load_space(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_unknown_space_name_lists_the_builtin_ones():
    with pytest.raises(SpaceError, match="arora2019, default, nasbench201"):
        load_space("no-such-space")


def test_score_cache_round_trips_and_separates_data_settings(tmp_path: Path):
    result = Score("abc123", KernelScores(0.5, 0.8, 0.45, 0.7, 0.3, 4.5, 0.1, 0.01, 0.4, 0.001),
                   KernelScores(0.45, 0.85, 0.4, 0.75, 0.2, 5.5, 0.2, 0.1, 0.35, 0.01),
                   seconds=1.5, pairs=100, device="cpu")
    ScoreCache(tmp_path, DataSettings(train_size=20).label).put(result)
    assert ScoreCache(tmp_path, DataSettings(train_size=20).label).get("abc123") == result
    assert ScoreCache(tmp_path, DataSettings(train_size=40).label).get("abc123") is None
    assert ScoreCache(tmp_path, DataSettings(train_size=20).label).get("other") is None
    assert not list(tmp_path.rglob("*.tmp"))


# ------------------------------------------------------------------------------------------------ cell space

def test_a_restricted_cell_space_proposes_only_its_cells(tmp_path: Path):
    space = load_space("nasbench201")
    table = [line.split(",")[0] for line in (Path(__file__).parent / "data" / "nb201_cifar10_dev.csv").read_text()
             .splitlines()[1:]]
    allowed = space.restricted(table)
    assert allowed.digest != space.digest and space.restricted(table[::-1]).digest == allowed.digest
    rewards = {}
    for name in ("tpe", "random"):
        sampler = make_sampler(name, allowed, seed=0)
        assert isinstance(sampler, RestrictedCellSampler)
        study = optuna.create_study(sampler=sampler, direction="maximize")
        # Rewarding 3x3 convs lets TPE's model leave its random start and propose on its own.
        study.optimize(lambda trial: allowed.suggest(trial).name.count("conv_3x3"), n_trials=60)
        names = [nasbench201.genotype_string(allowed.genotype(t.params)) for t in study.trials]
        assert set(names) <= set(table) and all(t.state.name == "COMPLETE" for t in study.trials)
        rewards[name] = sum(t.value for t in study.trials[30:])
    assert rewards["tpe"] > 2 * rewards["random"]  # TPE's model, not the random fallback, proposes there
    with pytest.raises(InvalidCandidate, match="not one of the allowed cells"):
        allowed.suggest(FixedTrial({name: "none" for name in space.distributions()}))
    with pytest.raises(SpaceError, match="uses an op outside the space's ops"):
        load_space(space_file(tmp_path, "cell: nasbench201\nops: [none, skip_connect]\n")).restricted(table)
    with pytest.raises(NasCntkError, match="--sampler grid: a search restricted to a table's cells"):
        make_sampler("grid", allowed, seed=0)


NB201_SPACE = "name: cells\ncell: nasbench201\nops: [none, nor_conv_3x3, skip_connect]\n"


def test_nasbench201_space_suggests_the_benchmark_network_named_by_its_genotype(tmp_path: Path):
    space = load_space("nasbench201")
    assert isinstance(space, CellSpace) and space.finite and space.ops == nasbench201.EDGE_OPS
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        arch = space.suggest(trial)
        genotype = nasbench201.parse_genotype(arch.name)
        assert sorted(trial.params) == sorted(f"edge_{i}to{j}" for j in (1, 2, 3) for i in range(j))
        assert genotype == tuple(tuple(trial.params[f"edge_{i}to{j}"] for i in range(j)) for j in (1, 2, 3))
        assert arch.hash == nas_cntk.load(nasbench201.description(arch.name, space.cells_per_stage)).hash
        study.tell(trial, 0.0)
    assert len({t.params["edge_0to1"] for t in study.trials} | set(space.ops)) == 5  # only the listed ops


def test_cell_space_ops_and_cells_per_stage_come_from_the_file(tmp_path: Path):
    space = load_space(space_file(tmp_path, NB201_SPACE + "fidelity: {cells_per_stage: 2}\n"))
    assert space.ops == ("none", "nor_conv_3x3", "skip_connect") and space.label == "cells-n2"
    arch = space.suggest(FixedTrial({f"edge_{i}to{j}": "nor_conv_3x3" for j in (1, 2, 3) for i in range(j)}))
    assert arch.hash == nas_cntk.load(nasbench201.description(arch.name, 2)).hash
    assert load_space(space_file(tmp_path, NB201_SPACE)).cells_per_stage == 5  # the benchmark's own


def test_fidelity_gives_data_defaults_that_options_override(tmp_path: Path):
    space = load_space(space_file(tmp_path, NB201_SPACE + "fidelity: {train_size: 60, resolution: 8}\n"))
    assert space.data_settings() == DataSettings(train_size=60, val_size=1000, resolution=8)
    assert space.data_settings(train_size=20, val_size=10, seed=3) == DataSettings(20, 10, 8, 3)
    assert load_space("default").data_settings() == DataSettings()


def test_data_fidelity_is_not_part_of_the_digest_but_cells_per_stage_is(tmp_path: Path):
    def digest(text: str) -> str:
        return load_space(space_file(tmp_path, text)).digest

    base = digest(NB201_SPACE)
    assert digest(NB201_SPACE + "fidelity: {train_size: 60}\n") == base  # the study checks data by its label
    assert digest(NB201_SPACE + "fidelity: {cells_per_stage: 1}\n") != base
    # A file without `fidelity:` keeps the digest of its content but its objective: studies from before resume.
    content = yaml.safe_load((EXAMPLES.parent / "default.yaml").read_text())
    content.pop("objective")
    old = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert load_space("default").digest == old


def test_a_space_names_its_default_objective_outside_its_digest(tmp_path: Path):
    plain = load_space(space_file(tmp_path, NB201_SPACE))
    named = load_space(space_file(tmp_path, NB201_SPACE + "objective: cntk_loo_sq_error\n"))
    assert (plain.objectives, named.objectives) == (("cntk_val_accuracy",), ("cntk_loo_sq_error",))
    assert named.digest == plain.digest  # the study checks its objective itself


@pytest.mark.parametrize("text, message", [
    (NB201_SPACE.replace("nasbench201", "darts"), "cell: expected one of nasbench201, got 'darts'"),
    (NB201_SPACE.replace("cell: nasbench201", "cell: [nasbench201]"), "cell: expected one of nasbench201, got ['"),
    (NB201_SPACE.replace("skip_connect", "max_pool_3x3"), "ops[2]: expected one of none, skip_connect"),
    (NB201_SPACE.replace("skip_connect", "none"), "ops: 'none' is listed twice"),
    (NB201_SPACE + "layers: 1\n", "layers: unknown key in a cell space"),
    (NB201_SPACE + "fidelity: {cells_per_stage: 0}\n", "fidelity.cells_per_stage: expected an integer >= 1, got 0"),
    (NB201_SPACE + "fidelity: {width: 8}\n", "fidelity.width: unknown key"),
    (NB201_SPACE + "fidelity: 5\n", "fidelity: expected a mapping"),
    ("stages: 1\nlayers: 1\nkernel: 3\nreadout: gap\nfidelity: {cells_per_stage: 2}\n",
     "fidelity.cells_per_stage: unknown key; allowed: train_size, val_size, resolution"),
])
def test_malformed_cell_space_names_file_and_key(tmp_path: Path, text: str, message: str):
    path = space_file(tmp_path, text)
    with pytest.raises(SpaceError) as error:
        load_space(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
