// The StackRewrite module; see README.md (Architecture).
