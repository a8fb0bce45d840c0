// The Supervisord module; see README.md (Architecture).
