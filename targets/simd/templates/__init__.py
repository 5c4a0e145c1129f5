"""One TVMScript template per weight format; each module's functions are the schedule variants of that format."""
