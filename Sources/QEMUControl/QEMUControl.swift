// The QEMUControl module; see README.md (Architecture).
