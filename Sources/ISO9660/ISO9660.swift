// The ISO9660 module; see README.md (Architecture).
