// The GuestTrigger module; see README.md (Architecture).
