-- worker_unregister: a worker that stops cleanly removes itself.
DELETE FROM jobline.workers WHERE id = %(id)s
