"""Checks the MPI worker scripts share (each worker runs as a script: its folder is on sys.path)."""


def expect(exc, text, fn, *args, **kwargs):
    """fn(*args, **kwargs) must raise `exc` with `text` in its message."""
    try:
        fn(*args, **kwargs)
    except exc as e:
        assert text in str(e), f"{text!r} not in {e}"
        return
    raise AssertionError(f"{fn.__name__} did not raise {exc.__name__} ({text})")
