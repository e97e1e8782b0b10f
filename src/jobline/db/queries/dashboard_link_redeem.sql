-- dashboard_link_redeem: use the link whose token hashes to %(token_hash)s, once: the row is
-- deleted, so of two browsers racing with the same link only one gets its credential back
-- (DELETE ... RETURNING takes the row lock). An expired link is deleted and returns nothing.
WITH used AS (DELETE FROM jobline.dashboard_links WHERE token_hash = %(token_hash)s RETURNING credential, expires_at)
SELECT credential FROM used WHERE expires_at > now()
