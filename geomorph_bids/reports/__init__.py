"""Visual reports: the participant HTML report with its figures, and the group report.

``build_participant_report(output_dir, subject, session=None)`` and
``build_group_report(output_dir)``; both read only the participant outputs.
"""

from .group import build_group_report
from .participant import build_participant_report, update_participant_report

__all__ = ["build_participant_report", "build_group_report", "update_participant_report"]
