// The Zstd module; see README.md (Architecture).
