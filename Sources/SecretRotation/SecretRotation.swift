// The SecretRotation module; see README.md (Architecture).
