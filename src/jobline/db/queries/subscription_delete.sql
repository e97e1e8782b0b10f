-- subscription_delete: remove subscription %(id)s, only if it is %(owner)s's (NULL: the
-- operator's) unless %(every_owner)s. Deliveries already queued still run.
DELETE FROM jobline.notification_subscriptions
WHERE id = %(id)s AND (%(every_owner)s OR owner IS NOT DISTINCT FROM %(owner)s)
RETURNING id, owner, url, events, headers, created_at
