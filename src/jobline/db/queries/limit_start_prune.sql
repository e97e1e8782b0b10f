-- limit_start_prune: forget the starts that no rate window can count any more: older than their
-- limit's period, or of a limit that was removed or no longer has a rate. Uses
-- limit_starts_window_idx; the log holds at most a window's starts per limit and key.
DELETE FROM jobline.limit_starts s
WHERE NOT EXISTS (SELECT 1 FROM jobline.limits l
                  WHERE l.id = s.limit_id AND l.rate_seconds IS NOT NULL
                    AND s.started_at > now() - make_interval(secs => l.rate_seconds))
