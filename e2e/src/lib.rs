//! End-to-end support: spawning binaries, fake providers, load generation.
