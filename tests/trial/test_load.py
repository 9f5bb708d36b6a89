"""What a training process loads once: here, how it quiets the libraries."""

from __future__ import annotations

import warnings

from hpsearch.trial import quiet_libraries


def test_quieting_the_libraries_installs_no_process_wide_warning_filter():
    with warnings.catch_warnings():
        before = list(warnings.filters)
        quiet_libraries()
        added = [entry for entry in warnings.filters if entry not in before]
    # Logs and bars are turned down, but no warning category (FutureWarning, Optuna's
    # ExperimentalWarning) nor message is hidden process-wide: each is silenced at its call.
    assert added == []
