"""Reading a config's YAML, bounded and strict: only a regular file of bounded size is read, its
expanded size is limited (aliases count at every use; `$LTH_MAX_CONFIG_NODES`), a character YAML
does not allow is named with its position, and a key said twice is refused rather than silently
overwritten."""
from __future__ import annotations

import os
import stat
import unicodedata
from pathlib import Path

import yaml

from lth_sweep.orchestrator.config_errors import ConfigError


#: how many YAML values a config file (or one --set value) may expand to, aliases counted at every use
MAX_NODES_VARIABLE = "LTH_MAX_CONFIG_NODES"
DEFAULT_MAX_NODES = 100_000


def max_nodes() -> int:
    text = os.environ.get(MAX_NODES_VARIABLE)
    if text is None:
        return DEFAULT_MAX_NODES
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ConfigError(f"${MAX_NODES_VARIABLE}={text!r}: expected a whole number >= 1 (default {DEFAULT_MAX_NODES})")
    return limit


#: Bytes a config file may hold, per YAML value the node limit allows, and at least: judged from the
#: file's size before a byte is read. PyYAML composes about 0.4 MB/s on a 2-core machine, so a 50 MB
#: file would take minutes before the node limit could refuse it; a config of 100,000 values (the
#: default limit) rarely averages 16 bytes a value, and the largest real ones (10,000 seeds written
#: out, the papers' configs) are under 100 KB.
BYTES_PER_NODE = 16
MIN_MAX_BYTES = 1 << 20


def max_bytes() -> int:
    return max(MIN_MAX_BYTES, BYTES_PER_NODE * max_nodes())


_FILE_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket"}


def read_config_text(path: Path) -> str:
    """The text of the config file `path`, refused unless it is a regular file within `max_bytes()`:
    judged by stat first, since opening a FIFO for reading blocks and /dev/zero never ends."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "not a file")
        raise ConfigError(f"{path}: {kind}, not a regular file; a sweep config is a YAML file")
    limit = max_bytes()
    if info.st_size > limit:
        raise ConfigError(_too_large(path, f"{info.st_size:,}", limit))
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)  # a file that grew since stat is still bounded
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(data) > limit:
        raise ConfigError(_too_large(path, f"more than {limit:,}", limit))
    try:
        return data.decode()
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}: {data[error.start:error.start + 1]!r})") from None


def _too_large(path: Path, size: str, limit: int) -> str:
    return (
        f"{path}: {size} bytes, more than a config file may hold ({limit:,} bytes: {BYTES_PER_NODE} per YAML value "
        f"of the limit of {max_nodes():,}); a sweep config is a few KB. If it really is this large, raise the "
        f"limit with the environment variable {MAX_NODES_VARIABLE}"
    )


def _unreadable_character(error: yaml.reader.ReaderError, text: str, source: str) -> str:
    """Where the character YAML refuses is (line, column, byte offset) and which it is."""
    before = text[: error.position]
    line = before.count("\n") + 1
    column = error.position - (before.rfind("\n") + 1) + 1
    where = f"{source}, line {line}, column {column}" if "\n" in text else f"{source}, column {column}"
    code = error.character if isinstance(error.character, int) else ord(str(error.character)[:1] or "\0")
    name = "a NUL byte" if code == 0 else unicodedata.name(chr(code), "a control character")
    return (
        f"{where} (byte {len(before.encode())}): U+{code:04X} ({name}) is not allowed in YAML (no control "
        "characters but tab and line breaks); remove it"
    )


def _expanded_size(root: yaml.Node, source: str) -> int:
    """Values the document stands for once every alias is replaced by what it names; computed
    once per node (so a billion-laughs document costs its length, not its expansion)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError(
                f"{source}, line {node.start_mark.line + 1}: an alias refers to the node it is part of "
                "(a recursive structure, which no config field takes)"
            )
        open_nodes.add(key)
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        total = 1 + sum(size(child) for child in children)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _refuse_duplicate_keys(root: yaml.Node, source: str) -> None:
    """YAML keeps the last of two equal keys, silently; a config that says a thing twice is refused."""
    seen: set[int] = set()

    def visit(node: yaml.Node, path: str) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, child in enumerate(node.value):
                visit(child, f"{path}[{index}]")
        elif isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    name = f"{path}.{key.value}" if path else key.value
                    line = key.start_mark.line + 1
                    if (key.tag, key.value) in first:
                        raise ConfigError(
                            f"{source}, line {line}: duplicate key {name!r}, already set on line "
                            f"{first[key.tag, key.value]}; YAML would silently keep only the last one"
                        )
                    first[key.tag, key.value] = line
                    visit(value, name)
                else:
                    visit(value, path)

    visit(root, "")


def parse_yaml(text: str, source: str):
    """The YAML document in `text` (None if it holds nothing), refused with a message naming
    `source` if it is not valid YAML, says a key twice, or expands beyond `max_nodes()`."""
    limit = max_nodes()
    try:
        loader = yaml.SafeLoader(text)  # checks every character at once
    except yaml.reader.ReaderError as error:
        raise ConfigError(_unreadable_character(error, text, source)) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, source)
        size = _expanded_size(node, source)
        if size > limit:
            raise ConfigError(
                f"{source}: expands to {size:,} YAML values, more than the limit of {limit:,}. Aliases (*name) "
                f"count every time they are used, so a few lines can stand for billions of values; if the "
                f"config really is this large, raise the limit with the environment variable {MAX_NODES_VARIABLE}"
            )
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        reason = "; ".join(part for part in (error.context, error.problem) if part)
        raise ConfigError(f"{where}: not valid YAML ({reason})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML ({' '.join(str(error).split())})") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to read") from None
    finally:
        loader.dispose()
