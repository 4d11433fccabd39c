"""What ``conveyor worker --python MODULE:APP`` learns from the app:
``python -m conveyor._manifest MODULE:APP`` prints one JSON object, the
interpreter and every declared task with its options."""

import json
import sys


def main(argv: "list[str]") -> int:
    from ._loader import app_from_argv

    app = app_from_argv(argv, "_manifest")
    if app is None:
        return 2
    tasks = []
    for name, task in sorted(app.tasks.items()):
        entry = {"name": name}
        entry.update(task.options.manifest())
        entry["queue"] = task.options.queue or app.default_queue
        tasks.append(entry)
    json.dump(
        {"app": argv[0], "executable": sys.executable, "url": app.url, "tasks": tasks},
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
