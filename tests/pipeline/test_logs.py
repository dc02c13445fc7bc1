"""The rule logs: arcal's progress at INFO, other libraries only from WARNING."""

import logging
import sys
from pathlib import Path

import pytest

from arcal import logs


@pytest.fixture
def restore_logging():
    """`logs.setup` replaces the root handlers, arcal's level and the excepthook: put them back."""
    root = logging.getLogger()
    handlers, root_level, arcal_level, excepthook = (
        root.handlers[:], root.level, logs.log.level, sys.excepthook
    )
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = handlers
    root.setLevel(root_level)
    logs.log.setLevel(arcal_level)
    sys.excepthook = excepthook
    logging.captureWarnings(False)


def test_a_rule_log_keeps_arcal_info_and_only_warnings_of_other_libraries(
    tmp_path: Path, restore_logging
) -> None:
    path = tmp_path / "rule.log"
    logs.setup(path, title="rule figure")
    logging.getLogger("arcal.report").info("wrote the figure")
    logging.getLogger("fontTools.subset").info("Glyph names: ['.notdef', 'A']")
    logging.getLogger("fontTools.subset").warning("a glyph is missing")
    logging.getLogger("arcal.report").debug("not at the default level")
    text = path.read_text()
    assert "==== rule figure started" in text
    assert "INFO arcal.report: wrote the figure" in text
    assert "WARNING fontTools.subset: a glyph is missing" in text
    assert "Glyph names" not in text and "not at the default level" not in text
