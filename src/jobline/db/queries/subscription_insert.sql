-- subscription_insert: add a webhook subscription for %(owner)s (NULL: the operator's, every
-- event), validated by operations/notifications.py; refused (no row) when that owner already has
-- %(max_per_owner)s of them. The owner's existing rows are locked first, so concurrent adds
-- mostly wait for each other (a bound against abuse, not an exact count: two first adds can pass).
WITH mine AS (
  SELECT id FROM jobline.notification_subscriptions
  WHERE owner IS NOT DISTINCT FROM %(owner)s
  FOR UPDATE
)
INSERT INTO jobline.notification_subscriptions (owner, url, events, headers)
SELECT %(owner)s, %(url)s, %(events)s::text[], %(headers)s::jsonb
WHERE (SELECT count(*) FROM mine) < %(max_per_owner)s
RETURNING id, owner, url, events, headers, created_at
