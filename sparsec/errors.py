"""The one exception type users see: a one-line message, printed by the CLI as ``error: ...`` with exit status 2."""


class SparsecError(Exception):
    """A user-facing failure (bad model, bad option, corrupted artifact). The message is one line."""


def ort_message(e: BaseException) -> str:
    """ONNX Runtime's exception text without its status prefix and C++ source location, on one line."""
    import re

    text = " ".join(str(e).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"^\S+\.(?:h|cc|cpp):\d+ .*?\) ", "", text)  # "file.h:46 void ns::Fn(args) message"
    return text[:300] or type(e).__name__


def first_line(e: BaseException) -> str:
    """The first line of an exception's text (300 characters at most), or its type's name."""
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
