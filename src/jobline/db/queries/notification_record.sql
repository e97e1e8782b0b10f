-- notification_record: record event %(kind)s for %(owner)s (NULL: operators only) about
-- %(subject)s with %(data)s, and queue its deliveries (jobline.record_event); returns its id.
SELECT jobline.record_event(%(kind)s, %(owner)s, %(subject)s, %(data)s::jsonb)
