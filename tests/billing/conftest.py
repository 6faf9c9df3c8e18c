# The real broker and worker of the notification tests, for the recurring-bill tests
# that run Celery beat and workers (test_schedule_worker.py).
from tests.notifications.test_worker import real_broker, redis_server, start_worker  # noqa: F401
