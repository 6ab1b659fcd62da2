DROP VIEW IF EXISTS clicks_to_counts_daily_mv;
DROP TABLE IF EXISTS click_counts_daily;
DROP VIEW IF EXISTS clicks_to_variant_visitor_hours_mv;
DROP TABLE IF EXISTS link_variant_visitor_hours;
