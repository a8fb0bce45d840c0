// The StackEntrypoint module; see README.md (Architecture).
