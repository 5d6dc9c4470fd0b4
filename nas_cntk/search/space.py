"""Search spaces: files that say which architectures a search may propose.

Three shapes of file, all YAML (or JSON), validated on load with errors that name the file and key:

* a **staged** space: a plain CNN of stages separated by 2x2 average pooling, each stage a number
  of ``conv k x k, relu`` layers (optionally residual), then a readout. Every key is a choice:
  a list is a categorical choice, ``{low: a, high: b}`` a float range (``step`` makes it finite,
  ``log: true`` samples on a log scale), a single value is fixed. ``layers`` may vary ``per: stage``
  and ``kernel`` ``per: stage`` or ``per: layer``. See ``search_spaces/default.yaml``.
* a **list** space: ``architectures:`` a list of description files (paths relative to the space
  file), searched by name. See ``search_spaces/arora2019.yaml``.
* a **cell** space: ``cell: nasbench201``, the NAS-Bench-201 macro network around one searched
  cell, each of the cell's 6 edges a choice among ``ops``. See ``search_spaces/nasbench201.yaml``.

Any space may give ``fidelity:`` defaults for the data (``train_size``, ``val_size``,
``resolution``), used where the command line gives none; a cell space also fixes its
``cells_per_stage`` there. Any space may name its default ``objective:``, what a search
maximises where ``--objective`` gives none (:mod:`nas_cntk.search.objectives`: a score, a cost or a sum;
a list of them for a multi-objective search). The data settings and the objective are left out of the
space's digest: a study checks them by its data label and its objective, so a changed default starts a
new study instead of clashing with the old.

``cost(arch)`` is what the trained network costs (FLOPs and parameters), recorded for every trial.

``suggest(trial)`` asks an Optuna trial for the choices and returns the description; a sampled
combination that has no valid network (pooled below one pixel, say) raises ``InvalidCandidate``.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from nas_cntk.checks import integer, is_integer, is_number, one_of
from nas_cntk.data import DataSettings
from nas_cntk.description import nasbench201
from nas_cntk.description.architecture import DEFAULT_WEIGHT_STD, Architecture, load, nasbench201_network, parse
from nas_cntk.description.cost import network_cost
from nas_cntk.description.ops.readout import READOUTS
from nas_cntk.errors import ArchitectureError, InvalidCandidate, NasCntkError, SpaceError
from nas_cntk.kernels import plan
from nas_cntk.scoring.measures import DEFAULT_OBJECTIVE
from nas_cntk.search.objectives import parse_objectives

BUILTIN_SPACES = Path(__file__).resolve().parents[2] / "search_spaces"  # beside the package, in the repository


@dataclass(frozen=True)
class Choice:
    """One searched quantity: an Optuna distribution, sampled once per network, stage or layer."""

    name: str
    distribution: BaseDistribution
    per: str = "network"

    def suggest(self, trial: optuna.Trial, suffix: str = "") -> Any:
        d, name = self.distribution, self.name + suffix
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(name, d.choices)
        return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)

    @property
    def finite(self) -> bool:
        return isinstance(self.distribution, CategoricalDistribution) or self.distribution.step is not None


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: Path
    digest: str  # of the file's parsed content but the data defaults: a resumed study must search the same space
    data_defaults: Mapping[str, int] = field(default_factory=dict, kw_only=True)  # the file's `fidelity` data keys
    objectives: tuple[str, ...] = field(default=(DEFAULT_OBJECTIVE,), kw_only=True)  # the file's `objective`
    rungs: tuple[int, ...] | None = field(default=None, kw_only=True)  # the file's `fidelity.rungs`

    @property
    def label(self) -> str:
        """What a study name starts with: the space's name, and anything else that changes its networks."""
        return self.name

    def data_settings(self, train_size: int | None = None, val_size: int | None = None,
                      resolution: int | None = None, seed: int = 0, zca: bool = False) -> DataSettings:
        """The data a search of this space uses: what is given, else the file's fidelity, else the defaults."""
        given = {"train_size": train_size, "val_size": val_size, "resolution": resolution}
        return DataSettings(**{**self.data_defaults, **{k: v for k, v in given.items() if v is not None}},
                            seed=seed, zca=zca)

    @property
    def finite(self) -> bool:
        """Whether every choice has finitely many values (exhaustive search is possible)."""
        raise NotImplementedError

    def cost(self, arch: Architecture) -> dict[str, int]:
        """FLOPs and parameters of the trained network (:mod:`nas_cntk.description.cost`)."""
        return network_cost(arch)

    def suggest(self, trial: optuna.Trial) -> Architecture:
        raise NotImplementedError


@dataclass(frozen=True)
class ListSpace(SearchSpace):
    """A fixed list of architectures; the one choice is which."""

    architectures: tuple[Architecture, ...]

    @property
    def finite(self) -> bool:
        return True

    def suggest(self, trial: optuna.Trial) -> Architecture:
        names = [arch.name for arch in self.architectures]
        return self.architectures[names.index(trial.suggest_categorical("architecture", names))]


@dataclass(frozen=True)
class StagedSpace(SearchSpace):
    """Stages of ``conv, relu`` layers separated by 2x2 average pooling, then a readout."""

    choices: Mapping[str, Choice]

    @property
    def finite(self) -> bool:
        return all(choice.finite for choice in self.choices.values())

    def suggest(self, trial: optuna.Trial) -> Architecture:
        c = self.choices
        residual = c["residual"].suggest(trial)
        layers: list[dict[str, Any]] = []
        for stage in range(1, c["stages"].suggest(trial) + 1):
            if stage > 1:
                layers.append({"op": "avg_pool", "window": 2})
            stage_layers = c["layers"].suggest(trial, f"_stage{stage}" if c["layers"].per == "stage" else "")
            for layer in range(1, stage_layers + 1):
                suffix = {"network": "", "stage": f"_stage{stage}",
                          "layer": f"_stage{stage}_layer{layer}"}[c["kernel"].per]
                block = [{"op": "conv", "kernel": c["kernel"].suggest(trial, suffix)}, {"op": "relu"}]
                # The first layer maps the image channels to the width, so it cannot be residual.
                layers += [{"op": "residual", "body": block}] if residual and layers else block
        description = {"weight_std": c["weight_std"].suggest(trial), "bias_std": c["bias_std"].suggest(trial),
                       "readout": c["readout"].suggest(trial),
                       "fix_first_and_readout": c["fix_first_and_readout"].suggest(trial), "layers": layers}
        return parse(description)


@dataclass(frozen=True)
class CellSpace(SearchSpace):
    """The NAS-Bench-201 macro network around one cell; each of the cell's edges is a choice of op.
    ``genotypes``, where given, are the only cells the search may propose (a benchmark table's)."""

    ops: tuple[str, ...]
    cells_per_stage: int
    genotypes: frozenset[nasbench201.Genotype] | None = field(default=None, kw_only=True)

    EDGES = tuple((i, j) for j in range(1, nasbench201.NODES) for i in range(j))  # in genotype order

    @property
    def label(self) -> str:
        return f"{self.name}-n{self.cells_per_stage}"

    @property
    def finite(self) -> bool:
        return True

    def restricted(self, genotypes: list[str]) -> CellSpace:
        """The same space, proposing only ``genotypes`` (benchmark spelling); they are part of its digest."""
        parsed = frozenset(nasbench201.parse_genotype(g) for g in genotypes)
        outside = sorted(nasbench201.genotype_string(g) for g in parsed
                         if any(op not in self.ops for node in g for op in node))
        if outside:
            raise SpaceError(f"{outside[0]}: uses an op outside the space's ops ({', '.join(self.ops)})")
        cells = "".join(sorted(nasbench201.genotype_string(g) for g in parsed))
        digest = hashlib.sha256((self.digest + cells).encode()).hexdigest()[:16]
        return replace(self, digest=digest, genotypes=parsed)

    def distributions(self) -> dict[str, CategoricalDistribution]:
        return {f"edge_{i}to{j}": CategoricalDistribution(self.ops) for i, j in self.EDGES}

    def genotype(self, params: Mapping[str, str]) -> nasbench201.Genotype:
        return tuple(tuple(params[f"edge_{i}to{j}"] for i in range(j)) for j in range(1, nasbench201.NODES))

    def params(self, genotype: nasbench201.Genotype) -> dict[str, str]:
        return {f"edge_{i}to{j}": genotype[j - 1][i] for i, j in self.EDGES}

    def cost(self, arch: Architecture) -> dict[str, int]:
        """The cost of the network the benchmark trains around the cell (5 cells per stage, 16 channels)."""
        flops, parameters = nasbench201.trained_network_cost(arch.name)
        return {"flops": flops, "parameters": parameters}

    def suggest(self, trial: optuna.Trial) -> Architecture:
        genotype = self.genotype({name: trial.suggest_categorical(name, d.choices)
                                  for name, d in self.distributions().items()})
        if self.genotypes is not None and genotype not in self.genotypes:
            raise InvalidCandidate(f"{nasbench201.genotype_string(genotype)} is not one of the allowed cells")
        return nasbench201_network(genotype, self.cells_per_stage)  # named by its genotype, for leaderboards


def check_candidate(arch: Architecture, resolution: int) -> None:
    """Raise InvalidCandidate when ``arch`` has no valid network on ``resolution`` x ``resolution`` images."""
    try:
        plan(arch, resolution, resolution)
    except ArchitectureError as error:
        raise InvalidCandidate(f"{arch.summary()}: {error}") from None


# ------------------------------------------------------------------------------------------------ loading

@dataclass(frozen=True)
class StagedKey:
    """One key of a staged space: the values it takes, its default, and how finely it may vary."""

    valid: Callable[[Any], bool]
    expected: str                            # what the error says it takes
    default: Any = None                      # None: the key is required
    per: tuple[str, ...] = ("network",)      # how often it is sampled: per network, stage or layer
    ranged: bool = False                     # may be a float range {low, high, step, log}


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


STAGED_KEYS = {
    "stages": StagedKey(is_integer, "integers >= 1"),
    "layers": StagedKey(is_integer, "integers >= 1", per=("network", "stage")),
    "kernel": StagedKey(lambda v: is_integer(v, odd=True), "odd integers >= 1", per=("network", "stage", "layer")),
    "residual": StagedKey(_is_bool, "true or false", default=False),
    "readout": StagedKey(lambda v: v in READOUTS, f"one of {', '.join(READOUTS)}"),
    "weight_std": StagedKey(is_number, "numbers >= 0", default=DEFAULT_WEIGHT_STD, ranged=True),
    "bias_std": StagedKey(is_number, "numbers >= 0", default=0.0, ranged=True),
    "fix_first_and_readout": StagedKey(_is_bool, "true or false", default=False),
}
RANGED = tuple(name for name, key in STAGED_KEYS.items() if key.ranged)
DATA_FIDELITY = ("train_size", "val_size", "resolution")  # `fidelity:` keys any space may set
CELLS = {"nasbench201": nasbench201.EDGE_OPS}  # cell families, with the ops their edges may take


def resolve_space_path(name_or_path: str | Path) -> Path:
    """A space file by path, or by name among the built-in ``search_spaces/`` (``default``, ``arora2019``, ...)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    for candidate in (BUILTIN_SPACES / f"{name_or_path}.yaml", BUILTIN_SPACES / str(name_or_path)):
        if candidate.exists():
            return candidate
    builtin = sorted(p.stem for p in BUILTIN_SPACES.glob("*.yaml"))
    raise SpaceError(f"{name_or_path}: no such search-space file (built-in spaces: {', '.join(builtin)})")


def load_space(name_or_path: str | Path) -> SearchSpace:
    path = resolve_space_path(name_or_path)
    try:
        content = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SpaceError(f"{path}: cannot read the search-space file ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise SpaceError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(content, Mapping):
        raise SpaceError(f"{path}: expected a mapping of keys, got {type(content).__name__}")
    name = str(content.get("name", path.stem))
    shape = "list" if "architectures" in content else "cell" if "cell" in content else "staged"
    try:
        fidelity = _fidelity(content.get("fidelity", {}), shape)
        rungs = fidelity.pop("rungs", None)
        data_defaults = {k: v for k, v in fidelity.items() if k in DATA_FIDELITY}
        searched = {k: v for k, v in content.items() if k not in ("fidelity", "objective")}
        objectives = _objectives(content.get("objective", DEFAULT_OBJECTIVE))
        if len(data_defaults) < len(fidelity):  # cells_per_stage changes the networks, so it is in the digest
            searched["fidelity"] = {k: v for k, v in fidelity.items() if k not in DATA_FIDELITY}
        digest = hashlib.sha256(json.dumps(searched, sort_keys=True, default=str).encode()).hexdigest()[:16]
        if shape == "list":
            space: SearchSpace = _list_space(content, path, name, digest)
        elif shape == "cell":
            space = _cell_space(content, path, name, digest, fidelity)
        else:
            space = _staged_space(content, path, name, digest)
    except SpaceError as error:
        raise SpaceError(f"{path}: {error}") from None
    return replace(space, data_defaults=data_defaults, objectives=objectives, rungs=rungs)


def _objectives(value: Any) -> tuple[str, ...]:
    """The file's ``objective``: one, or a list for a multi-objective search."""
    texts = tuple(map(str, value)) if isinstance(value, list) else (str(value),)
    try:
        return tuple(o.text for o in parse_objectives(texts, "objective"))
    except NasCntkError as error:
        raise SpaceError(str(error)) from None


def _fidelity(value: Any, shape: str) -> dict[str, Any]:
    """The ``fidelity:`` mapping: data defaults and ``rungs`` for any space, ``cells_per_stage`` for a cell
    space."""
    allowed = (*DATA_FIDELITY, "rungs", *(("cells_per_stage",) if shape == "cell" else ()))
    if not isinstance(value, Mapping):
        raise SpaceError(f"fidelity: expected a mapping with keys among {', '.join(allowed)}, got {value!r}")
    fidelity = dict(value)
    for key, v in value.items():
        if key not in allowed:
            raise SpaceError(f"fidelity.{key}: unknown key; allowed: {', '.join(allowed)}")
        if key == "rungs":  # checked against the search's data when a search starts
            if not isinstance(v, list) or not all(is_integer(n, 10) for n in v):
                raise SpaceError(f"fidelity.rungs: expected a list of training sizes, got {v!r}")
            fidelity[key] = tuple(v)
        else:
            integer(v, f"fidelity.{key}", error=SpaceError)
    return fidelity


def _cell_space(content: Mapping[str, Any], path: Path, name: str, digest: str,
                fidelity: Mapping[str, int]) -> CellSpace:
    unknown = sorted(set(content) - {"name", "description", "cell", "ops", "fidelity", "objective"})
    if unknown:
        raise SpaceError(f"{unknown[0]}: unknown key in a cell space; allowed: cell, description, fidelity, name, "
                         "objective, ops")
    family = content["cell"]
    one_of(family, CELLS, "cell", error=SpaceError)
    ops = content.get("ops", list(CELLS[family]))
    if not isinstance(ops, list) or not ops:
        raise SpaceError(f"ops: expected a non-empty list of edge ops, got {ops!r}")
    for i, op in enumerate(ops):
        one_of(op, CELLS[family], f"ops[{i}]", error=SpaceError)
    if len(set(ops)) < len(ops):
        raise SpaceError(f"ops: {next(op for op in ops if ops.count(op) > 1)!r} is listed twice")
    return CellSpace(name, path, digest, tuple(ops), fidelity.get("cells_per_stage", 5))


def _list_space(content: Mapping[str, Any], path: Path, name: str, digest: str) -> ListSpace:
    unknown = sorted(set(content) - {"name", "description", "architectures", "fidelity", "objective"})
    if unknown:
        raise SpaceError(f"{unknown[0]}: unknown key in a list space; allowed: architectures, description, "
                         "fidelity, name, objective")
    entries = content["architectures"]
    if not isinstance(entries, list) or not entries:
        raise SpaceError(f"architectures: expected a non-empty list of description files, got {entries!r}")
    archs = []
    for i, entry in enumerate(entries):
        try:
            archs.append(load(path.parent / str(entry)))
        except ArchitectureError as error:
            raise SpaceError(f"architectures[{i}]: {error}") from None
    names = [arch.name for arch in archs]
    if len(set(names)) < len(names):
        raise SpaceError(f"architectures: two entries share the name {next(n for n in names if names.count(n) > 1)!r}")
    return ListSpace(name, path, digest, tuple(archs))


def _staged_space(content: Mapping[str, Any], path: Path, name: str, digest: str) -> StagedSpace:
    allowed = {"name", "description", "fidelity", "objective", *STAGED_KEYS}
    unknown = sorted(set(content) - allowed)
    if unknown:
        raise SpaceError(f"{unknown[0]}: unknown key; allowed: {', '.join(sorted(allowed))}")
    choices = {}
    for option, key in STAGED_KEYS.items():
        if option not in content and key.default is None:
            raise SpaceError(f"{option}: missing (expected {key.expected}, as a list of choices or one value)")
        choices[option] = _choice(option, content.get(option, key.default), key)
    return StagedSpace(name, path, digest, choices)


def _choice(name: str, value: Any, key: StagedKey) -> Choice:
    per = "network"
    if isinstance(value, Mapping) and "choices" in value:
        extra = sorted(set(value) - {"choices", "per"})
        if extra:
            raise SpaceError(f"{name}.{extra[0]}: unknown key; allowed: choices, per")
        per = value.get("per", "network")
        one_of(per, key.per, f"{name}.per", error=SpaceError)
        value = value["choices"]
    if isinstance(value, Mapping):
        if not key.ranged:
            raise SpaceError(f"{name}: a range is only allowed for {' and '.join(RANGED)}; give a list of choices")
        return Choice(name, _float_range(name, value), per)
    choices = value if isinstance(value, list) else [value]
    if not choices:
        raise SpaceError(f"{name}: expected at least one choice")
    for i, v in enumerate(choices):
        if not key.valid(v):
            raise SpaceError(f"{name}[{i}]: expected {key.expected}, got {v!r}")
    return Choice(name, CategoricalDistribution(choices), per)


def _float_range(key: str, value: Mapping[str, Any]) -> FloatDistribution:
    extra = sorted(set(value) - {"low", "high", "step", "log"})
    if extra:
        raise SpaceError(f"{key}.{extra[0]}: unknown key; allowed: low, high, step, log")
    for bound in ("low", "high"):
        if not is_number(value.get(bound)):
            raise SpaceError(f"{key}.{bound}: expected a number >= 0, got {value.get(bound)!r}")
    try:
        return FloatDistribution(float(value["low"]), float(value["high"]), log=bool(value.get("log", False)),
                                 step=value.get("step"))
    except ValueError as error:  # low > high, log with low = 0, step with log, ...
        raise SpaceError(f"{key}: {error}") from None
