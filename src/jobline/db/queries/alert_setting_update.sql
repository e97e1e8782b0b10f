-- alert_setting_update: function.failing's threshold, %(failures)s final failures within
-- %(window_seconds)s (Settings.alert_failures, alert_window), written when it differs.
UPDATE jobline.alert_settings SET failures = %(failures)s, window_seconds = %(window_seconds)s
WHERE (failures, window_seconds) IS DISTINCT FROM (%(failures)s, %(window_seconds)s::float8)
