"""Checks of a workflow configuration that run before the first job.

The schema (workflow/schemas/config.schema.yaml) checks each value on its own. These checks cover
what it cannot: settings that contradict each other, sizes the data cannot satisfy, models that
cannot be built, and software or hardware the jobs that are about to run need. Each problem is
reported with the config key or file it concerns and what to do, all problems at once, before
Snakemake starts a job; otherwise each would surface only when its job ran (on a cluster, after
the GPU queue).

Two stages, because the Snakefile is parsed on every invocation, dry-runs included:

* `config_problems` (DAG time, every run and dry-run; no torch import, milliseconds): grid
  references, the temporal pilot, every cell's training settings against the training job's own
  rules (`TrainConfig.problems`: warm-up longer than training, `min_lr` above `lr`, label
  smoothing of 1, ...), `device: cuda` without GPUs requested, dataset sizes the data
  cannot hold (read from file headers where the data is present), snapshot ensembles larger
  than the snapshots a run keeps, fine-tuning checkpoints that do not exist.
* `environment_problems` (Snakemake's `onstart`, real runs only, given the jobs about to run):
  every model can be built (registered substrate, valid `model:` keys; built on PyTorch's meta
  device, so no memory or time is spent on weights; errors only a forward pass would meet are
  left to the job); the data is where the config says, and npz labels pass the loader's checks;
  existing splits and manifest files are readable; `latexmk` and `pdflatex` are installed when
  the paper is built; CUDA is visible when a `device: cuda` job runs here; the permutation tests'
  C kernel builds when a job that runs them is about to (it is built once per machine, so later
  runs only load it).

What runs on cluster nodes (the executor is not local) cannot be checked from the login node:
there a missing CUDA device or data folder is a warning, not an error. So is a C compiler missing
here when jobs run in conda environments, which bring their own. LaTeX is always checked,
because the paper is a local rule.
"""

from __future__ import annotations

import gzip
import shutil
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from arcal import grid
from arcal.train_config import TrainConfig

# Official split sizes of the datasets whose sizes do not depend on the copy (train, test).
KNOWN_SIZES = {
    "cifar10": (50000, 10000),
    "cifar100": (50000, 10000),
    "tiny-imagenet": (100000, 10000),
}
# Image size, channels and classes of the built-in datasets (for building models before the data
# is loaded).
KNOWN_GEOMETRY = {
    "fashion-mnist": (28, 1, 10),
    "cifar10": (32, 3, 10),
    "cifar100": (32, 3, 100),
    "tiny-imagenet": (64, 3, 200),
}
FASHION_MNIST_DEBIAN = "/usr/share/datasets/fashion-mnist"  # = arcal.data.FASHION_MNIST_DEBIAN
GPU_RULES = ("train", "dump", "dump_with_ensemble")
# Rules whose jobs run permutation tests, and so build or load their C kernel.
PERMUTATION_RULES = ("permutation", "planted", "audit")


class ConfigError(ValueError):
    """One or more problems of a configuration, each naming its key and what to do."""

    def __init__(self, problems: list[str], what: str = "configuration") -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"arcal: the {what} has {len(problems)} problem(s):\n{lines}")


# ----------------------------------------------------------------------------- DAG time


def grid_file(name: str) -> str:
    """The file of grid `name`, `profiles/<name>/grid.yaml`; ConfigError if there is none."""
    path = Path("profiles") / name / "grid.yaml"
    if not path.is_file():
        known = sorted(p.parent.name for p in Path("profiles").glob("*/grid.yaml"))
        raise ConfigError(
            [
                f"grid = {name!r}: there is no {path}; choose paper (config.yaml alone) or one of "
                f"{', '.join(known)}"
            ]
        )
    return str(path)


def check_grid_choice(command_line: Any) -> None:
    """ConfigError when `--config` was given without `grid=`: it replaces the profile's own
    `config:` entry, which is where a profile chooses its grid, so the run would silently plan
    the paper grid. `command_line` is the `--config` mapping."""
    if command_line and "grid" not in command_line:
        raise ConfigError(
            [
                f"--config {' '.join(f'{k}=...' for k in command_line)} replaces the profile's "
                "`config:` entry, where a profile chooses its grid (profiles/test: grid: test); "
                "put the overrides in a YAML file and pass it with --configfile, or add "
                "grid=<name> to --config (grid=paper for config.yaml alone)"
            ],
            "command line",
        )


def explain_schema_error(error: Exception) -> Exception:
    """The schema error with a hint when the bad value is a string that reads as a number or
    boolean: Snakemake parses values nested in `--config` as strings, and YAML reads `1e-3`
    (no dot) as a string. Other errors are returned as they are."""
    cause = error.__context__  # Snakemake raises its error while handling jsonschema's
    value = getattr(cause, "instance", None)
    if not isinstance(value, str) or not _reads_as_scalar(value):
        return error
    key = ".".join(str(p) for p in cause.absolute_path)
    return ConfigError(
        [
            f"{key} = {value!r} is a string where the schema wants {cause.validator_value} "
            f"({cause.message}). Values nested in --config (e.g. --config "
            f"{key.split('.')[0]}='{{...}}') are read as strings: put the override in a YAML file "
            "and pass it with --configfile. In YAML files write floats with a dot (1.0e-3, not "
            "1e-3)"
        ]
    )


def _reads_as_scalar(text: str) -> bool:
    """Whether `text` is a number or boolean to YAML or to Python (`1e-3` is one only to Python)."""
    import yaml

    try:
        if isinstance(yaml.safe_load(text), (int, float, bool)):
            return True
    except yaml.YAMLError:
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_config(config: dict) -> None:
    """Raise ConfigError listing every problem `config_problems` finds."""
    problems = config_problems(config)
    if problems:
        raise ConfigError(problems)


def config_problems(config: dict) -> list[str]:
    """Problems of the configuration found without torch or the data's content (see module)."""
    try:
        grid.check_references(config)
    except ValueError as exc:
        return [str(exc)]
    settings = {cell: grid.train_settings(config, cell) for cell in grid.cells(config)}
    problems = _train_problems(config, settings) + _device_problems(config, settings)
    problems += _size_problems(config) + _temporal_problems(config, settings)
    return problems + _checkpoint_problems(config)


def _per_cell(problems: dict[str, list[grid.Cell]]) -> list[str]:
    """One line per distinct problem, with (up to three of) the cells it concerns."""
    out = []
    for message, cells in problems.items():
        shown = ", ".join(c.id for c in cells[:3]) + (
            f" and {len(cells) - 3} more" if len(cells) > 3 else ""
        )
        out.append(f"{message} (cells: {shown})")
    return out


def _train_problems(config: dict, settings: dict[grid.Cell, dict]) -> list[str]:
    """Each cell's training settings against the rules the training job applies
    (`TrainConfig.problems`); the schema checks values one by one, these also compare them.
    The message names the config key each value comes from."""
    found: dict[str, list[grid.Cell]] = defaultdict(list)
    for cell, s in settings.items():

        def key(name: str) -> str:
            return f"{grid.setting_source(config, cell, name)} = {s[name]!r}"

        for problem in TrainConfig(**s).problems():
            found[problem.message(key)].append(cell)
    return _per_cell(found)


def _device_problems(config: dict, settings: dict[grid.Cell, dict]) -> list[str]:
    """`device: cuda` where the GPU rules request no GPU: the job would get none."""
    found: dict[str, list[grid.Cell]] = defaultdict(list)
    for cell, s in settings.items():
        for group in ("train", "dump"):
            if s["device"] == "cuda" and not config["resources"][group].get("gpu", 0):
                found[
                    f"{grid.setting_source(config, cell, 'device')} = 'cuda' but "
                    f"resources.{group}.gpu is 0, so the {group} jobs get no GPU; request one "
                    f"(resources.{group}.gpu: 1) or use device: auto"
                ].append(cell)
    return _per_cell(found)


def dataset_sizes(spec: dict, name: str) -> tuple[int, int] | None:
    """(official train size, official test size) of a dataset, read from file headers where its
    data is present; None where not known without loading it."""
    kind = spec.get("kind", name)
    root = spec.get("root")
    if kind in KNOWN_SIZES:
        return KNOWN_SIZES[kind]
    if kind == "fashion-mnist":
        folder = Path(root) if root else Path(FASHION_MNIST_DEBIAN)
        sizes = []
        for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
            found = [p for p in (folder / (stem + ".gz"), folder / stem) if p.is_file()]
            if not found:
                return None
            with (gzip.open if found[0].suffix == ".gz" else open)(found[0], "rb") as f:
                header = f.read(8)
            if len(header) < 8 or int.from_bytes(header[:4], "big") != 2049:
                return None  # the loader says what is wrong with the file
            sizes.append(int.from_bytes(header[4:8], "big"))
        return sizes[0], sizes[1]
    if kind == "npz" and root and Path(root).is_file():
        shapes = npz_shapes(root)
        if "y_train" in shapes and "y_test" in shapes:
            return shapes["y_train"][0], shapes["y_test"][0]
    return None


def npz_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in an .npz file, read from their headers (not their data)."""
    import numpy as np

    shapes = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.endswith(".npy"):
                    with z.open(name) as f:
                        version = np.lib.format.read_magic(f)
                        read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                            version, np.lib.format.read_array_header_2_0
                        )
                        shapes[name[: -len(".npy")]] = read(f)[0]
    except (OSError, ValueError, zipfile.BadZipFile):
        return {}  # unreadable: the loader reports it with the file's name
    return shapes


def _size_problems(config: dict) -> list[str]:
    """Subset sizes larger than the official splits of the data they are drawn from."""
    problems = []
    for name in grid.datasets(config):
        spec = config["datasets"][name]
        sizes = dataset_sizes(spec, name)
        if sizes is None:
            continue
        n_train, n_test = sizes
        if spec.get("n_train") is not None and spec["n_train"] > n_train:
            problems.append(
                f"datasets.{name}.n_train = {spec['n_train']} but the train split holds {n_train} "
                f"images; lower it or set it to null (all)"
            )
        if spec["n_calib"] + spec["n_test"] > n_test:
            problems.append(
                f"datasets.{name}.n_calib + n_test = {spec['n_calib']} + {spec['n_test']} but the "
                f"official test split they are drawn from holds {n_test} images; lower them"
            )
    return problems


def _temporal_problems(config: dict, settings: dict[grid.Cell, dict]) -> list[str]:
    """Snapshot ensembles larger than the number of snapshots a temporal cell's run keeps."""
    pilot = config.get("temporal", {})
    if not pilot.get("enabled", True):
        return []
    found: dict[str, list[grid.Cell]] = defaultdict(list)
    k = pilot.get("ensemble_k", 5)
    for cell in grid.temporal_cells(config):
        s = settings[cell]
        kept = s["epochs"] // s["snapshot_stride"]
        if kept < k:
            found[
                f"temporal.ensemble_k = {k} but a run of {s['epochs']} epochs "
                f"({grid.setting_source(config, cell, 'epochs')}) keeps {kept} snapshot(s) at "
                f"temporal.snapshot_stride = {s['snapshot_stride']}; lower ensemble_k or the "
                "stride"
            ].append(cell)
    return _per_cell(found)


def _checkpoint_problems(config: dict) -> list[str]:
    """Fine-tuning checkpoints of the grid's substrates that do not exist."""
    used = {c.substrate for c in grid.cells(config)}
    return [
        f"substrates.{name}.checkpoint = {spec['checkpoint']!r} does not exist; point it at a "
        "local timm checkpoint file"
        for name, spec in sorted(config["substrates"].items())
        if name in used and spec.get("checkpoint") and not Path(spec["checkpoint"]).is_file()
    ]


# ----------------------------------------------------------------------------- onstart


@dataclass
class Findings:
    """Problems that stop the run (errors) and problems only cluster nodes can settle (warnings)."""

    errors: list[str]
    warnings: list[str]


def check_environment(
    config: dict, jobs: Iterable[Any], local: bool, conda: bool = False
) -> list[str]:
    """Raise ConfigError listing the errors `environment_problems` finds for the Snakemake jobs
    about to run; return its warnings."""
    jobs = list(jobs)
    rules = {job.rule.name for job in jobs}
    outputs = {str(f) for job in jobs for f in job.output}
    found = environment_problems(config, rules, outputs, local, conda)
    if found.errors:
        raise ConfigError(found.errors, "run")
    return found.warnings


def environment_problems(
    config: dict, rules: set[str], outputs: set[str], local: bool, conda: bool = False
) -> Findings:
    """Problems of the jobs about to run (their rule names and output files), here or (`local`
    False) on cluster nodes, in this environment or (`conda`) in those of envs/: models, data,
    splits files, LaTeX, CUDA, the permutation kernel (see the module docstring for what is an
    error where)."""
    found = Findings([], [])
    if rules & set(PERMUTATION_RULES):
        (found.errors if local and not conda else found.warnings).extend(_kernel_problems())
    if rules & set(GPU_RULES):
        found.errors += model_problems(config)
        found.errors += _split_file_problems(config, outputs)
        cuda = _cuda_problems(config)
        (found.errors if local else found.warnings).extend(cuda)
    if rules & {"splits", *GPU_RULES}:
        (found.errors if local else found.warnings).extend(_missing_data_problems(config))
        found.errors += _npz_label_problems(config)
    if "paper" in rules:
        missing = [tool for tool in ("latexmk", "pdflatex") if shutil.which(tool) is None]
        if missing:
            found.errors.append(
                f"the paper is built with LaTeX but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not on PATH; "
                "install TeX Live with latexmk (Debian: ./setup.sh installs latexmk "
                "texlive-latex-base texlive-latex-recommended texlive-fonts-recommended), or "
                "build a figure or table target instead of the PDF"
            )
    return found


def _kernel_problems() -> list[str]:
    """The permutation tests' C kernel builds (or is built) here."""
    from arcal.calibration.permutation import null_kernel

    try:
        null_kernel()
    except RuntimeError as error:
        return [f"the permutation tests need their C kernel, and {error}"]
    return []


def model_problems(config: dict) -> list[str]:
    """Every cell's model can be built (on the meta device: shapes only, no weights)."""
    import torch

    from arcal.models import SUBSTRATES, create_model

    problems: dict[str, list[grid.Cell]] = defaultdict(list)
    built: dict[str, str | None] = {}
    for cell in grid.cells(config):
        settings = grid.train_settings(config, cell)
        arch = settings["substrate"]
        if arch not in SUBSTRATES:
            problems[
                f"substrates.{cell.substrate}.arch = {arch!r} is not a registered substrate "
                f"(registered: {', '.join(sorted(SUBSTRATES))}); fix the name or register it "
                "in arcal/models/registry.py"
            ].append(cell)
            continue
        geometry = _geometry(config, cell.dataset)
        if geometry is None:
            continue
        img_size, in_chans, num_classes = geometry
        what = (
            f"substrates.{cell.substrate} (arch {arch}, model: {settings['model_overrides']}) "
            f"on {cell.dataset} ({img_size}x{img_size}x{in_chans})"
        )
        key = f"{what} {cell.variant} {settings['block_size']} {settings['drop_path']}"
        if key not in built:
            try:
                with torch.device("meta"):
                    create_model(
                        arch,
                        cell.variant,
                        num_classes=num_classes,
                        img_size=img_size,
                        in_chans=in_chans,
                        block_size=settings["block_size"],
                        drop_path_rate=settings["drop_path"],
                        **settings["model_overrides"],
                    )
                built[key] = None
            except Exception as exc:  # noqa: BLE001 - any failure to build is the finding
                built[key] = f"{type(exc).__name__}: {exc}"
        if built[key]:
            problems[
                f"{what} cannot be built ({built[key]}); fix substrates.{cell.substrate}."
                "model (timm keyword arguments) or block_size"
            ].append(cell)
    return _per_cell(problems)


def _geometry(config: dict, dataset: str) -> tuple[int, int, int] | None:
    """(image size, channels, classes) of a dataset where known without loading it."""
    spec = config["datasets"][dataset]
    kind = spec.get("kind", dataset)
    if kind in KNOWN_GEOMETRY:
        return KNOWN_GEOMETRY[kind]
    shape = npz_shapes(spec["root"]).get("x_train") if kind == "npz" and spec.get("root") else None
    if shape is None or len(shape) not in (3, 4):
        return None  # the loader says what is wrong with an npz file
    # the loader's layouts: (N, H, W), (N, H, W, C), (N, C, H, W); the class count does not
    # change whether a model can be built
    if len(shape) == 3:
        return shape[1], 1, 2
    if shape[3] in (1, 3) and shape[1] not in (1, 3):
        return shape[1], shape[3], 2
    return shape[2], shape[1], 2


def _split_file_problems(config: dict, outputs: set[str]) -> list[str]:
    """Existing splits and manifest files, not about to be rewritten, that cannot be read."""
    from arcal.data import load_splits, read_manifest

    problems = []
    for name in grid.datasets(config):
        folder = Path("results/data") / name
        for path, read in (
            (folder / "splits.npz", load_splits),
            (folder / "manifest.json", read_manifest),
        ):
            if path.exists() and str(path) not in outputs:
                try:
                    read(path)
                except ValueError as exc:
                    problems.append(str(exc))
    return problems


def _cuda_problems(config: dict) -> list[str]:
    import torch

    if torch.cuda.is_available():
        return []
    cells = [c for c in grid.cells(config) if grid.train_settings(config, c)["device"] == "cuda"]
    if not cells:
        return []
    message = (
        "device: cuda but no CUDA device is visible here (torch.cuda.is_available() is False); "
        "use device: auto (GPU when there is one) or run on a GPU node"
    )
    return _per_cell({message: cells})


def _missing_data_problems(config: dict) -> list[str]:
    """Datasets whose files are not where the config says (and that are not to be downloaded)."""
    problems = []
    for name in grid.datasets(config):
        spec = config["datasets"][name]
        kind = spec.get("kind", name)
        missing = None if spec.get("download") else _missing_data(kind, spec.get("root"))
        if missing:
            download = kind in ("fashion-mnist", "cifar10", "cifar100")
            problems.append(
                f"datasets.{name}: {missing}; install the data there, point datasets.{name}.root "
                "at it" + (", or set download: true" if download else "")
            )
    return problems


def _npz_label_problems(config: dict) -> list[str]:
    """The npz loader's label checks for the npz datasets present here (labels are data, not
    a property of the machine: an error wherever the jobs run)."""
    problems = []
    for name in grid.datasets(config):
        spec = config["datasets"][name]
        if spec.get("kind", name) == "npz" and spec.get("root") and Path(spec["root"]).is_file():
            from arcal.data import DatasetError, check_npz_labels

            try:
                check_npz_labels(spec["root"])
            except DatasetError as exc:
                problems.append(f"datasets.{name}: {exc}")
    return problems


def _missing_data(kind: str, root: str | None) -> str | None:
    """What is missing of a dataset's files (None when they look present; the loader checks
    their content)."""
    if kind == "fashion-mnist":
        folder = Path(root) if root else Path(FASHION_MNIST_DEBIAN)
        stems = (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
        candidates = [folder, folder / "FashionMNIST" / "raw"]
        if any(
            all((c / s).is_file() or (c / (s + ".gz")).is_file() for s in stems) for c in candidates
        ):
            return None
        return f"the Fashion-MNIST IDX files are not in {folder}"
    if root is None:
        return "no root is set"
    need = {
        "cifar10": [Path(root) / "cifar-10-batches-py", Path(root) / "cifar-10-python.tar.gz"],
        "cifar100": [Path(root) / "cifar-100-python", Path(root) / "cifar-100-python.tar.gz"],
        "tiny-imagenet": [Path(root) / "val" / "val_annotations.txt"],
        "folder": [Path(root) / "train"],
        "npz": [Path(root)],
    }[kind]
    return (
        None if any(p.exists() for p in need) else f"{' or '.join(map(str, need))} does not exist"
    )
