-- 000009_qr_render_bio_themes: undo exactly what the .up.sql file does.
DELETE FROM bio_page_themes WHERE workspace_id IS NULL AND name IN ('Light', 'Dark', 'Ocean');
ALTER TABLE qr_codes DROP COLUMN logo_png, DROP COLUMN border, DROP COLUMN scale;
