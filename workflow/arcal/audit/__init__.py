"""Audit any model: arcal's diagnostic suite on per-example outputs and traces given as data.

The question the suite asks of Attention Residuals' routing trace, whether a model-internal
feature says anything about calibration beyond confidence, applies to any per-example trace:
mixture-of-experts routing, adaptive computation, token dropping, plain attention. This package
reads such traces from a file (:mod:`arcal.audit.inputs`, README "Auditing any model"), runs the
workflow's own per-cell stages on them (:mod:`arcal.audit.run`) and writes a short report
(:mod:`arcal.audit.report`). Command line: ``python -m arcal.audit`` (:mod:`arcal.audit.cli`);
Snakemake: the ``audits:`` section of config.yaml (workflow/rules/audit.smk).
"""

from arcal.audit.inputs import AuditData, AuditInputError, load_audit, read_table
from arcal.audit.run import STAGES, audit_settings, run_audit

__all__ = ["STAGES", "AuditData", "AuditInputError", "audit_settings", "load_audit", "read_table",
           "run_audit"]
