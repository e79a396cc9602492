"""`scepd run`: the renewal daemon.  The only package that touches systemd (part 2)."""
