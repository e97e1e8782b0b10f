-- job_filter_owned: those of the job ids %(ids)s that exist and belong to %(owner)s. The HTTP
-- API checks a user's depends_on with it, so a user can neither wait on another user's job nor
-- learn that it exists. Uses the primary key.
SELECT id FROM jobline.jobs WHERE id = ANY(%(ids)s::bigint[]) AND owner = %(owner)s
