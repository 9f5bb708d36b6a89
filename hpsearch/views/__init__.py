"""What people see of a study: the console's progress and tables, `status` and `best`, the note in
optuna-dashboard, the report, an exported model's card and the dashboard itself. Reads the storage
through Optuna's public API, hpsearch.storage and hpsearch.study (never Optuna's private API); no
torch or transformers here."""

from hpsearch.views.dashboard import LOOPBACK, SERVERS, make_app, serve
from hpsearch.views.kept_model import choose_kept_model
from hpsearch.views.model_card import (
    ADAPTER_CONFIG,
    adapter_is_mergeable,
    describe_epochs,
    final_model_card,
    model_card,
    read_adapter_settings,
)
from hpsearch.views.note import NoteWriter, register_worker, render_note, write_note
from hpsearch.views.progress import RunProgress, TrainingProgress, describe_trial
from hpsearch.views.report import write_report
from hpsearch.views.status import all_studies, best_trial, describe_trial_record, study_status
from hpsearch.views.tables import (
    best_table,
    describe_final_data,
    describe_test_scores,
    final_trainings_table,
    format_seconds,
    format_value,
    pareto_table,
    running_table,
    spec_changes_table,
    studies_table,
    summary_table,
)

__all__ = [
    "ADAPTER_CONFIG",
    "LOOPBACK",
    "SERVERS",
    "NoteWriter",
    "RunProgress",
    "TrainingProgress",
    "adapter_is_mergeable",
    "all_studies",
    "best_table",
    "best_trial",
    "choose_kept_model",
    "describe_epochs",
    "describe_final_data",
    "describe_test_scores",
    "describe_trial",
    "describe_trial_record",
    "final_model_card",
    "final_trainings_table",
    "format_seconds",
    "format_value",
    "make_app",
    "model_card",
    "pareto_table",
    "read_adapter_settings",
    "register_worker",
    "render_note",
    "running_table",
    "serve",
    "spec_changes_table",
    "studies_table",
    "study_status",
    "summary_table",
    "write_note",
    "write_report",
]
