-- subscription_list: the subscriptions of %(owner)s (with %(every_owner)s: of everyone; else
-- NULL: the operator's), oldest first.
SELECT id, owner, url, events, headers, created_at
FROM jobline.notification_subscriptions
WHERE %(every_owner)s OR owner IS NOT DISTINCT FROM %(owner)s
ORDER BY id
