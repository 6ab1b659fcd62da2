DROP TABLE IF EXISTS clicks_analytics;
