"""SCIM 2.0 documents without HTTP: schema tree, filters and PATCH (RFC 7643, RFC 7644)."""
