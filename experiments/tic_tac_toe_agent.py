"""Moved to the library: ``rljaxinterp.findings`` (seeded agent sets, ``tic_tac_toe_agent``).

Kept only until ``ttt_distillation.py`` imports ``rljaxinterp.findings.cli`` directly; then delete.
"""

from rljaxinterp.findings.agents import tic_tac_toe_agent  # noqa: F401
from rljaxinterp.findings.cli import open_single_agent as open_experiment  # noqa: F401
from rljaxinterp.findings.cli import single_agent_parser as experiment_parser  # noqa: F401
