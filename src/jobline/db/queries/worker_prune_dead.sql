-- worker_prune_dead: forget workers not seen for %(dead_seconds)s seconds.
DELETE FROM jobline.workers WHERE last_seen_at < now() - make_interval(secs => %(dead_seconds)s)
