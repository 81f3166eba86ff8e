"""Log lines and files: the MEMORY | ... text, request ids on records, JSON lines, file handlers."""
