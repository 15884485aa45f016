"""Federation: server keys, request signing, server discovery and the outbound HTTP client."""
