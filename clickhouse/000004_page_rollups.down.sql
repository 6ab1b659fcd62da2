DROP VIEW IF EXISTS clicks_to_visitor_hours_mv;
DROP TABLE IF EXISTS link_visitor_hours;
DROP VIEW IF EXISTS clicks_to_counts_hourly_mv;
DROP TABLE IF EXISTS click_counts_hourly;
