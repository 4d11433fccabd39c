"""The benchmark's tasks, for either side (``BENCH_SIDE``), on the Redis
``BENCH_URL`` under ``BENCH_PREFIX``: a no-op with its result stored, and a
chord's header (``one``) and body (``total``, the sum of the header's
results)."""

import os

side = os.environ["BENCH_SIDE"]
url = os.environ["BENCH_URL"]
prefix = os.environ["BENCH_PREFIX"]

if side == "conveyor":
    import conveyor

    app = conveyor.App("%s?prefix=%s" % (url, prefix))

    @app.task(retries=0)
    def noop():
        return None

    @app.task(retries=0)
    def one():
        return 1

    @app.task(retries=0)
    def total(results):
        return sum(results)

else:
    from celery import Celery

    app = Celery("bench", broker=url, backend=url)
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_default_queue=prefix + "q",
    )

    @app.task(name="noop")
    def noop():
        return None

    @app.task(name="one")
    def one():
        return 1

    @app.task(name="total")
    def total(results):
        return sum(results)
