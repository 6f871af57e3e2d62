"""PURE: which interface names multihome can use at all.

The kernel takes as an interface name
1-15 bytes with no `/`, `:`, `%` (a `%d` is a template it fills in) or whitespace, other
than `.` and `..`. Every renderer quotes or escapes such a name for its own language (YAML,
nft, sysctl.d, ifupdown, shell, Prometheus labels). What none of them can express is refused
where the name enters, with the name shown: a name that is not UTF-8 (netlink's names are
decoded with replacement characters, so two such names would read alike and a file written
for one would act on the other), and a name with a control character (it would forge log
lines and hide in every file it is written to).
"""

from __future__ import annotations

MAX_BYTES = 15  # IFNAMSIZ - 1
REPLACEMENT = "\ufffd"  # what a byte that is not UTF-8 decodes to (errors="replace")


def problem(name: str) -> str | None:
    """Why `name` cannot be an interface name multihome writes anywhere; None when it can."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: bytes that were not UTF-8
        return "is not UTF-8"
    if REPLACEMENT in name:
        return "is not UTF-8 (or holds U+FFFD)"
    if not 1 <= size <= MAX_BYTES:
        return f"has {size} bytes; an interface name has 1-{MAX_BYTES}"
    if name in (".", "..", "all", "default"):  # the last two are namespace-wide sysctl keys
        return f"is {name}, which no interface can be called"
    for char in name:
        # the kernel's isspace() is Latin-1's: the byte 0xA0 (in the UTF-8 of U+0120, say)
        # is a space to it too
        if char in "/:%" or char.isspace() or 0xA0 in char.encode("utf-8"):
            return f"holds {char!r}, which the kernel refuses in an interface name"
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            return f"holds the control character {char!r}"
    return None
