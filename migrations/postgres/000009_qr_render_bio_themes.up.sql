-- QR rendering options the spec's qr_codes row has no place for, and the built-in bio themes.
-- scale/border: segno's module size in pixels and quiet zone in modules. logo_png: the
-- centred logo (<= 256 KiB PNG, checked by the api); logo_url stays for externally hosted logos.
ALTER TABLE qr_codes
    ADD COLUMN scale SMALLINT NOT NULL DEFAULT 10 CONSTRAINT qr_codes_scale_check CHECK (scale BETWEEN 1 AND 40),
    ADD COLUMN border SMALLINT NOT NULL DEFAULT 4 CONSTRAINT qr_codes_border_check CHECK (border BETWEEN 0 AND 20),
    ADD COLUMN logo_png BYTEA
        CONSTRAINT qr_codes_logo_png_size_check CHECK (logo_png IS NULL OR octet_length(logo_png) <= 262144);

-- Built-in themes (workspace_id NULL) every workspace can pick.
INSERT INTO bio_page_themes (workspace_id, name, colors, font) VALUES
    (NULL, 'Light', '{"background": "#ffffff", "text": "#111827", "button": "#4f46e5", "button_text": "#ffffff"}', '{"family": "system-ui", "weight": 400}'),
    (NULL, 'Dark', '{"background": "#111827", "text": "#f9fafb", "button": "#f9fafb", "button_text": "#111827"}', '{"family": "system-ui", "weight": 400}'),
    (NULL, 'Ocean', '{"background": "#e0f2fe", "text": "#0c4a6e", "button": "#0369a1", "button_text": "#ffffff"}', '{"family": "Georgia", "weight": 400}');
