-- queue_exemption_prune: forget the "run now" exemptions (queue_pause_exemptions) of jobs that
-- have been claimed since, or are gone: their attempt count moved on, so none can match again.
DELETE FROM jobline.queue_pause_exemptions e
WHERE NOT EXISTS (SELECT FROM jobline.jobs j
                  WHERE j.id = e.job_id AND j.status = 'pending' AND j.attempts = e.attempts)
