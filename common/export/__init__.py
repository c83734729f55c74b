"""Exporters: per-frame glTF scenes, one animated glTF per clip, and BVH motion per tracked person."""
