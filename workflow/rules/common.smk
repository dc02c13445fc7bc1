# The grid and the path patterns every stage shares. A cell is
# {dataset}/{substrate}/{variant}/seed{seed} (the layout README.md's tour describes).

from arcal import grid
from arcal.report import aggregate as summaries
from arcal.report.figures import FIGURES
from arcal.report.tables import TABLES

CELL = "{dataset}/{substrate}/{variant}/seed{seed}"
CELLS = grid.cells(config)
ROUTED = grid.routed_cells(config)
TEMPORAL = grid.temporal_cells(config)
TEMPORAL_ROUTED = [c for c in TEMPORAL if c.routed]
CELL_IDS = [c.id for c in CELLS]

for _arm, _reason in grid.skipped_arms(config).items():
    logger.warning(f"arcal: arm {_arm!r} is skipped: {_reason}")
for _reason in grid.dropped_temporal_cells(config).values():
    logger.warning(f"arcal: {_reason}")


def per_cell(pattern, cells):
    """Expand a path pattern with the {dataset}/{substrate}/{variant}/{seed} of each cell."""
    return [
        pattern.format(dataset=c.dataset, substrate=c.substrate, variant=c.variant, seed=c.seed)
        for c in cells
    ]


def one_of(values):
    """A wildcard constraint that matches exactly these values (nothing when there are none)."""
    return "|".join(re.escape(v) for v in values) or "(?!)"


def cell_of(wildcards):
    return grid.Cell(wildcards.dataset, wildcards.substrate, wildcards.variant, int(wildcards.seed))


def pilot_cell(wildcards):
    """The cell of a temporal-pilot job, whose wildcard {cell} is the cell's id."""
    return grid.Cell.parse(wildcards.cell)


def train_settings(wildcards):
    return grid.train_settings(config, cell_of(wildcards))


def split_settings(wildcards):
    return grid.split_settings(config, wildcards.dataset)


def resource(group, key):
    return config["resources"][group][key]


def test_dump(wildcards):
    """The test dump of a cell: the final model's, or the snapshot ensemble's ({ens} = .ensemble)."""
    suffix = "_ensemble" if wildcards.ens else ""
    return per_cell(f"results/dumps/{CELL}/test{suffix}.npz", [cell_of(wildcards)])[0]


def summary_inputs(wildcards):
    return [f"results/{p}" for p in summaries.summary_inputs(wildcards.summary, CELL_IDS)]


def table_inputs(wildcards):
    spec = TABLES[wildcards.name]
    return {
        "summaries": [f"results/summary/{s}" for s in spec.inputs],
        "template": f"paper/templates/{spec.template}",
    }


def figure_inputs(wildcards):
    return {
        "summaries": [f"results/summary/{s}" for s in FIGURES[wildcards.name].inputs],
        "style": "workflow/arcal/report/arcal.mplstyle",
    }
