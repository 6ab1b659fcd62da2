"""QR codes for links: rendering (segno + Pillow), scan markers and storage."""
