// Served by the demo guest's dashboard stand-in. The build bakes in the public placeholder
// key; trigger-fast-rotate replaces it with the fresh key after a snapshot resume.
window.STACK_PUBLISHABLE_CLIENT_KEY = "00000000000000000000000000000000ffffffffffffffffffffffffffffffff";
