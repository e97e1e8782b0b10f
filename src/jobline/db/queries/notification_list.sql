-- notification_list: events newest first (of %(owner)s; NULL: every owner's and the operators'
-- own), filtered by %(kind)s and %(since)s (created at or after), keyset-paged with
-- %(before_id)s, %(limit)s of them. notifications_owner_idx for one owner, the primary key for
-- all; not prepared, so that the plan sees which.
SELECT id, kind, owner, subject, data, created_at
FROM jobline.notifications
WHERE (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s
