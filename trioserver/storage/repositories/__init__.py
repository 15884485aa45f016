"""All SQL lives here: plain functions taking an apsw connection, one module per table cluster."""
