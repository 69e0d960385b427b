"""The one exception type the verifier raises."""


class VerifyError(Exception):
    """Raised for every rejection: malformed bytes, a bad signature, a wrong answer.

    The verifier exists to be run on bytes from an untrusted node, so any failure
    (including one that would otherwise surface as IndexError, struct.error,
    UnicodeDecodeError, OverflowError, ...) is reported as this type and nothing else.
    """
