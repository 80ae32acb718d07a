"""learndir: a self-hosted user directory speaking the iSpring Learn user API."""

__version__ = "0.2.0"
