"""scepd: SCEP (RFC 8894) client and certificate renewal daemon."""

__version__ = "0.1.0"
