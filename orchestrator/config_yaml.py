"""Reading a config's YAML, bounded and strict: its expanded size is limited (aliases count at every
use; `$LTH_MAX_CONFIG_NODES`), and a key said twice is refused rather than silently overwritten."""
from __future__ import annotations

import os

import yaml

from orchestrator.config_errors import ConfigError


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
    loader = yaml.SafeLoader(text)
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
