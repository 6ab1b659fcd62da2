ALTER TABLE clicks_analytics MODIFY COLUMN referer_domain String;
ALTER TABLE clicks_analytics DROP COLUMN IF EXISTS visitor_other;
ALTER TABLE clicks_analytics DROP COLUMN IF EXISTS visitor_bits;
