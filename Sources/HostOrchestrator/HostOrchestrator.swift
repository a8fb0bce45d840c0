// The HostOrchestrator module; see README.md (Architecture).
