"""Conditional parameters: one sampled only when others have given values (`when:`), and one name
with alternatives (a range per condition, such as a learning-rate range per batch size or model).

A condition names a searched choice or a fixed value (the model while it is fixed, a training:
value, or a fixed peft value as peft.KEY). The parameters a condition names are sampled first; a
parameter whose condition does not hold is left out of the trial (its setting keeps its default),
so the trial's parameters, and the dashboard, show only what it sampled. Alternatives share the
plain name in Optuna: its storage keeps one kind of distribution (and one log setting) per name but
lets a range differ from trial to trial, and each trial samples from its own (a value a
multivariate sampler proposes outside it is drawn again by the sampler's independent sampler,
within it).
"""

from __future__ import annotations

import difflib
from typing import Any

from hpsearch.spec.param import ChoiceParam, FloatParam, IntParam, Param
from hpsearch.spec.techniques import PEFT_PREFIX

Entry = Param | list[Param]


def alternatives(entry: Entry) -> list[Param]:
    """A search_space entry's alternatives (one for a plain parameter)."""
    return entry if isinstance(entry, list) else [entry]


def is_conditional(entry: Entry) -> bool:
    """Some trials may leave the parameter out."""
    return any(p.when is not None for p in alternatives(entry))


def same_value(a: Any, b: Any) -> bool:
    """Equal as spec values: true is not 1, as YAML writes them apart."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def holds(when: dict[str, list] | None, values: dict[str, Any]) -> bool:
    """Each parameter `when` names has one of its listed values in `values` (left out: no)."""
    return when is None or all(
        name in values and any(same_value(values[name], v) for v in allowed)
        for name, allowed in when.items()
    )


def active_param(entry: Entry, values: dict[str, Any]) -> Param | None:
    """The alternative of `entry` whose condition holds for `values`, or None: not sampled."""
    return next((p for p in alternatives(entry) if holds(p.when, values)), None)


def sampling_order(space: dict[str, Entry]) -> list[str]:
    """The names of `space`, each after those its conditions name, otherwise in the spec's order.
    (check_conditions has refused cycles.)"""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for other in _named(space[name]):
            if other in space and other not in order:
                visit(other)
        order.append(name)

    for name in space:
        visit(name)
    return order


def check_conditions(space: dict[str, Entry], fixed: dict[str, Any]) -> None:
    """Each `when:` names a searched choice or a fixed value, with values it can take; the
    alternatives of a name fit one Optuna distribution and never hold together; no cycle. A
    ValueError says what is wrong, naming the key."""
    for name, entry in space.items():
        _check_alternatives(name, entry)
        for param in alternatives(entry):
            for other, allowed in (param.when or {}).items():
                _check_named(name, other, allowed, space, fixed)
        if not any(_fixed_part_holds(p.when, space, fixed) for p in alternatives(entry)):
            raise ValueError(
                f"{_key(name)}.when: the fixed values it names never have the values it lists, "
                f"so {name} would never be sampled; fix the values or remove {name}"
            )
    _refuse_cycles(space)


# Samplers that search one space fixed for the whole study: a parameter outside it (a conditional
# one) is drawn at random by their independent sampler.
FIXED_SPACE_SAMPLERS = ("gp", "cmaes", "qmc")


def check_sampler_fits(sampler: str, space: dict[str, Entry]) -> None:
    """The sampler searches every parameter of `space`, as their documentation states: CMA-ES
    searches no choice, and GP, CMA-ES and QMC no conditional parameter."""
    for name, entry in space.items():
        if sampler == "cmaes" and isinstance(entry, ChoiceParam):
            raise ValueError(
                f"sampler.name: cmaes searches numbers only, and {_key(name)} is a choice it "
                "would draw at random; use name: tpe (or gp), or make it a fixed value"
            )
        if sampler in FIXED_SPACE_SAMPLERS and is_conditional(entry):
            raise ValueError(
                f"sampler.name: {sampler} searches one space fixed for the study, and "
                f"{_key(name)} is conditional (when:), which it would draw at random; use name: "
                "tpe (with multivariate: true and group: true) or random"
            )


def _check_alternatives(name: str, entry: Entry) -> None:
    if not isinstance(entry, list):
        return
    if len(entry) < 2:
        raise ValueError(
            f"{_key(name)}: a list of alternatives needs two or more, each with when:; for one "
            "range write it without the list"
        )
    if any(isinstance(p, ChoiceParam) for p in entry):
        raise ValueError(
            f"{_key(name)}: alternatives are ranges (float: or int:); Optuna keeps one list of "
            "choices per name, so give one choice: and put when: on the parameters that depend "
            "on it"
        )
    kinds = {(type(p), p.log) for p in entry}
    if len(kinds) > 1:
        raise ValueError(
            f"{_key(name)}: alternatives must all be float: or all int:, with the same log: "
            "(Optuna keeps one kind of distribution per name)"
        )
    for i, param in enumerate(entry, 1):
        if param.when is None:
            raise ValueError(
                f"{_key(name)}: alternative {i} has no when:; each alternative says when it applies"
            )
    for i, first in enumerate(entry, 1):
        for j, second in enumerate(entry[i:], i + 1):
            if not _disjoint(first.when, second.when):
                raise ValueError(
                    f"{_key(name)}: alternatives {i} and {j} can hold in the same trial; give "
                    "them a parameter in common with different values"
                )


def _disjoint(first: dict[str, list], second: dict[str, list]) -> bool:
    return any(
        not any(same_value(a, b) for a in first[name] for b in second[name])
        for name in set(first) & set(second)
    )


def _check_named(
    name: str, other: str, allowed: list, space: dict[str, Entry], fixed: dict[str, Any]
) -> None:
    where = f"{_key(name)}.when"
    if other == name:
        raise ValueError(f"{where}: names {name} itself; name another parameter")
    if other in space:
        target = space[other]
        if not isinstance(target, ChoiceParam):
            kind = {FloatParam: "a float range", IntParam: "an int range"}.get(
                type(alternatives(target)[0]), "a parameter"
            )
            raise ValueError(
                f"{where}: {other} is {kind}; a condition names a choice (choice: [...]) or a "
                "fixed value"
            )
        for value in allowed:
            if not any(same_value(value, c) for c in target.choices):
                raise ValueError(
                    f"{where}: {value!r} is not one of {other}'s choices {target.choices}"
                )
    elif other not in fixed:
        close = difflib.get_close_matches(other, [*space, *fixed], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(
            f"{where}: {other} is neither searched nor fixed{hint}; name a choice of "
            "search_space: or a training: value"
        )


def _fixed_part_holds(when: dict[str, list] | None, space: dict[str, Entry], fixed: dict) -> bool:
    named = {k: v for k, v in (when or {}).items() if k not in space}
    return holds(named, fixed)


def _refuse_cycles(space: dict[str, Entry]) -> None:
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise ValueError(
                f"{_key(name)}.when: the conditions go round ({' -> '.join(cycle)}), so none "
                "of them can be sampled first; remove one of them"
            )
        if name in done:
            return
        for other in _named(space[name]):
            if other in space:
                visit(other, [*path, name])
        done.add(name)

    for name in space:
        visit(name, [])


def _named(entry: Entry) -> list[str]:
    """The parameters the conditions of `entry` name."""
    return [other for p in alternatives(entry) for other in (p.when or {})]


def _key(name: str) -> str:
    """Where the parameter is in the spec: peft.r or search_space.NAME."""
    return name if name.startswith(PEFT_PREFIX) else f"search_space.{name}"
