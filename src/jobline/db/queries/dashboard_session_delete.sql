-- dashboard_session_delete: sign out: the session whose id hashes to %(id_hash)s ends.
DELETE FROM jobline.dashboard_sessions WHERE id_hash = %(id_hash)s
