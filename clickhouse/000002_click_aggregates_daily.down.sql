DROP VIEW IF EXISTS click_aggregates_daily_view;
DROP VIEW IF EXISTS clicks_to_daily_mv;
DROP TABLE IF EXISTS click_aggregates_daily;
