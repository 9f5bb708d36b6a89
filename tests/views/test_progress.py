"""The progress lines a search prints: reasons and values are shown as they are, never as markup."""

from __future__ import annotations

import io

from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from hpsearch.study import FAIL_REASON_ATTR
from hpsearch.views.progress import describe_trial

# What a rank whose peer died records: gloo names its source file in brackets, which rich would
# read as a closing tag (and raise MarkupError, a traceback in the middle of a Ctrl-C).
GLOO_REASON = (
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] "
    "Connection closed by peer"
)


def test_a_failed_trial_line_shows_its_reason_and_values_verbatim():
    trial = create_trial(
        state=TrialState.FAIL,
        params={"scheduler": "[/linear]"},
        distributions={"scheduler": CategoricalDistribution(["[/linear]", "cosine"])},
        user_attrs={FAIL_REASON_ATTR: GLOO_REASON},
    )
    out = io.StringIO()
    Console(file=out, width=400, color_system=None).print(describe_trial(trial, "eval_accuracy"))
    assert GLOO_REASON in out.getvalue() and "scheduler=[/linear]" in out.getvalue()
