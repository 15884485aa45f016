"""Domain logic: no HTTP, no SQL. Services raise MatrixError for anything a client caused."""
