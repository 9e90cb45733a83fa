"""geomorph-bids: GeoMorph cortical surface registration as a BIDS-App."""

__version__ = "0.1.0.dev0"
