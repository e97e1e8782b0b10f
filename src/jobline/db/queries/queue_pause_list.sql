-- queue_pause_list: the paused queues, by name.
SELECT queue, paused_at, reason FROM jobline.queue_pauses ORDER BY queue
