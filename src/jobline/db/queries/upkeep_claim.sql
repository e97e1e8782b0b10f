-- upkeep_claim: take this round of table upkeep if none ran in the last %(every_seconds)s;
-- returns a row only to the one caller that took it (the UPDATE serialises on jobline.upkeep's
-- single row, and the second caller's re-check sees the first one's ran_at).
UPDATE jobline.upkeep SET ran_at = now()
WHERE ran_at <= now() - make_interval(secs => %(every_seconds)s)
RETURNING ran_at
