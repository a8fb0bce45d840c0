// The StackPostgres module; see README.md (Architecture).
