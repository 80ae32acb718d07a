"""learndir: a self-hosted user directory speaking the iSpring Learn user API."""
