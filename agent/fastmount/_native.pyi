from collections.abc import Callable

def serve(
    source: str,
    mount_path: str,
    mount_options: str,
    threads: int = ...,
    readahead_kib: int = ...,
    max_request_kib: int = ...,
    passthrough: bool = ...,
    zero_message_open: bool = ...,
    readdirplus_always: bool = ...,
    adaptive_attrs: bool = ...,
    entry_timeout: float = ...,
    attr_timeout: float = ...,
    negative_timeout: float = ...,
    debug: bool = ...,
    spin_us: int = ...,
    dir_read_ahead: bool = ...,
    on_mounted: Callable[[], None] | None = ...,
) -> None: ...
def counters() -> tuple[int, int, int, int]: ...
