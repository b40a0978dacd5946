"""OCI distribution client: references, manifests, auth challenges, mirrors, blob fetches."""
