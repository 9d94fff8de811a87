"""Thin Nipype interfaces around bida's pure functions (niworkflows ``SimpleInterface`` style)."""
