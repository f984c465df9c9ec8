"""tweetsim: simulate a brand's Twitter audience (likes prediction and tweet writing)."""

__version__ = "0.1.0"
