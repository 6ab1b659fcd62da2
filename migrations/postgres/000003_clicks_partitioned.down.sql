DROP FUNCTION IF EXISTS linkrift_ensure_click_partitions(integer);
-- Dropping the partitioned table drops every partition, including clicks_default.
DROP TABLE IF EXISTS clicks;
