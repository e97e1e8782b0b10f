-- pipeline_upsert_many: record the pipelines an App declares (%(names)s with their validated
-- %(steps)s, jobline/pipeline.py), when a worker or `jobline serve` starts. A pipeline whose steps
-- did not change is not written. Returns the names written (new or changed). Pipelines no App
-- declares any more stay (runs may still name them); nothing here removes one.
INSERT INTO jobline.pipelines AS p (name, steps)
SELECT n, s::jsonb FROM unnest(%(names)s::text[], %(steps)s::text[]) AS d(n, s)
ON CONFLICT (name) DO UPDATE SET steps = EXCLUDED.steps, updated_at = now()
  WHERE p.steps IS DISTINCT FROM EXCLUDED.steps
RETURNING p.name
