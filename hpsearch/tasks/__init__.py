"""The kinds of fine-tuning hpsearch tunes, one module each, behind one interface (base.Task): the
dataset keys a spec gives it, its metrics, how rows become model inputs, the transformers classes
that train it (by name) and the pipeline that serves the result. No torch or transformers here."""

from hpsearch.errors import SpecError
from hpsearch.tasks.base import IGNORED, TASK_KEY, DatasetBase, Labels, LengthChoice, Task
from hpsearch.tasks.causal_lm import CausalLM, CausalLMData
from hpsearch.tasks.question_answering import QuestionAnswering, QuestionAnsweringData
from hpsearch.tasks.seq2seq import Seq2Seq, Seq2SeqData
from hpsearch.tasks.text_classification import TextClassification, TextClassificationData
from hpsearch.tasks.token_classification import TokenClassification, TokenClassificationData

# Adding a task: one module with a Task subclass, and one entry here.
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        TextClassification(),
        TokenClassification(),
        Seq2Seq(),
        CausalLM(),
        QuestionAnswering(),
    )
}
DEFAULT_TASK = TextClassification.name


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise SpecError(f"task: unknown task {name!r}; hpsearch tunes {', '.join(TASKS)}") from None


__all__ = [
    "DEFAULT_TASK",
    "IGNORED",
    "TASKS",
    "TASK_KEY",
    "CausalLM",
    "CausalLMData",
    "DatasetBase",
    "Labels",
    "LengthChoice",
    "QuestionAnswering",
    "QuestionAnsweringData",
    "Seq2Seq",
    "Seq2SeqData",
    "Task",
    "TextClassification",
    "TextClassificationData",
    "TokenClassification",
    "TokenClassificationData",
    "get_task",
]
