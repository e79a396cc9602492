"""scepd's own SCEP CA for tests and labs (``scepd devca``): micromdm-like standard mode and an
NDES mode that behaves as Microsoft NDES does.  Not for production certificates."""
