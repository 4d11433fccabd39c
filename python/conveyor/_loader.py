"""Finding the App a worker serves: ``module:attribute`` (or ``module`` with
one App in it), imported the way ``python -m`` would, from the current
directory."""

import importlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._app import App


def load_app(spec: str) -> "App":
    """The App ``spec`` names; raises InvalidConfig with what went wrong."""
    from ._app import App
    from .errors import InvalidConfig

    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise InvalidConfig("%r: name the app as MODULE:APP, e.g. tasks:app" % spec)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        if getattr(e, "name", None) == module_name:
            raise InvalidConfig(
                "cannot import module %r (from %s): %s" % (module_name, os.getcwd(), e)
            ) from e
        raise
    if attr:
        obj = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise InvalidConfig("module %r has no %r" % (module_name, attr)) from None
        if not isinstance(obj, App):
            raise InvalidConfig("%s is a %s, not a conveyor.App" % (spec, type(obj).__name__))
        return obj
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) != 1:
        raise InvalidConfig(
            "module %r holds %d conveyor.App objects; name one as %s:APP"
            % (module_name, len(apps), module_name)
        )
    return apps[0]


def app_from_argv(argv: "list[str]", program: str) -> "App | None":
    """The app ``python -m conveyor.PROGRAM MODULE:APP`` names, or ``None``
    after saying on stderr what is wrong (the caller exits 2)."""
    import sys

    from .errors import ConveyorError

    if len(argv) != 1:
        print("usage: python -m conveyor.%s MODULE:APP" % program, file=sys.stderr)
        return None
    try:
        return load_app(argv[0])
    except ConveyorError as e:
        print("conveyor: %s" % e, file=sys.stderr)
        return None
