"""The Graph: content store, layers by chain ID with parent links, images and references."""
