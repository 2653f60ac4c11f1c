"""A module whose import fails (for the check of EXPERIENCE_USER_TRAITS and friends)."""

raise RuntimeError("this module cannot be imported without its configuration")
