"""Sans-IO SCEP (RFC 8894): build and parse messages from bytes and objects.

Nothing in this package opens a socket or a file, reads a clock, the environment or a random
source: time, randomness (``rand(n) -> bytes``) and keys are passed in by the caller.  The one
exception is inside cryptography's RSA encryption primitive, whose PKCS#1 padding draws its own
random bytes.
"""
