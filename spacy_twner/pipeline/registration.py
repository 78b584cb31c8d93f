"""One registration per factory name, whichever copy of this folder is imported first.

This folder exists in several copies in one environment: spacy_twner's own
(imported through its `spacy_factories` entry points whenever spaCy creates a
Language) and one inside each model package (`spacy package --code` copies it
into en_twner and en_twner_fp32, so that they load without spacy_twner).
spaCy keeps one factory per name and process, and refuses a second function
under a taken name (E004). The copies are one component, so the first copy
imported registers it and later copies use that registration:

- same source: nothing to say (one build's copies are byte for byte equal);
- another version of the same module (a package built by another spacy_twner):
  a warning naming both files, since this copy's pipelines now run that code;
- a factory of that name that is not one of these modules: an error.

The other modules import this one relatively, which works in both homes
(`spacy_twner.pipeline.registration`, `en_twner.registration`), or by path
when they are loaded as lone files (`spacy package` imports each code file
on its own to check it).
"""
import inspect
import warnings
from pathlib import Path
from typing import Any, Callable

from spacy.language import Language
from spacy.util import registry


class TwnerFactoryWarning(UserWarning):
    """Two different versions of a twner factory were imported in one process."""


def register_factory(name: str, func: Callable, **factory_meta: Any) -> Callable:
    """Language.factory(name, **factory_meta)(func), unless a copy of func's
    module registered the name first; returns the function spaCy will call."""
    internal = Language.get_factory_name(name)
    if internal not in registry.factories:
        Language.factory(name, func=func, **factory_meta)
        return func
    existing = registry.factories.get(internal)
    if existing is func:
        return func
    ours, theirs = _file(func), _file(existing)
    if getattr(existing, "__qualname__", None) != func.__qualname__ or Path(theirs).stem != Path(ours).stem:
        raise ValueError(
            f"factory {name!r} is already registered by {getattr(existing, '__module__', existing)!r}, "
            f"which is not spacy_twner's {func.__qualname__}; rename one of the two components"
        )
    if _source(ours) != _source(theirs):
        warnings.warn(
            f"factory {name!r}: {ours} and {theirs} are different versions of one component; "
            f"every pipeline in this process uses the first imported ({theirs}). Install matching "
            "versions of spacy_twner and the model packages to silence this.",
            TwnerFactoryWarning,
            stacklevel=2,
        )
    return existing


def _file(func: Callable) -> str:
    try:
        return inspect.getfile(func)
    except TypeError:  # a builtin or C function: no file to compare
        return repr(func)


def _source(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:  # no source file (a compiled-only install): compare by path
        return path
