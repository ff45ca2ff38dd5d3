"""The config's metadata expressions (``anomaly_label``, ``train_selection``): parsed, never executed.

An expression is parsed with Python's :mod:`ast` and only a small language is accepted; anything
else is refused before a value is looked at, so a config can never run code. The language:

- column names of the metadata (``run``, ``anomaly_kind``); a name that is not an identifier is
  written in backticks (```run number` == 3``);
- numbers, quoted strings, ``True`` and ``False``;
- comparisons ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` (chains such as ``1 < run < 5`` too);
- ``in`` and ``not in`` with a list or tuple of numbers and strings (``run in [1, 2]``);
- ``and``, ``or``, ``not`` and parentheses;
- arithmetic on numbers: ``+``, ``-``, ``*``, ``/``, ``//``, ``%`` (``run % 2 == 1``).

Everything else (attribute access, calls, subscripts, ``@`` names, names with double underscores,
``**``, lambdas, comprehensions, f-strings, conditional expressions, assignments) is refused with
one line naming the config key and what is allowed. Evaluation works column by column on the
metadata table (pandas), so it costs one vectorized pass per operation.
"""

from __future__ import annotations

import ast
import operator
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import ConfigError

#: what an expression may contain, as the error messages say it
ALLOWED = (
    "column names (in backticks if not an identifier), numbers, quoted strings, True/False, "
    "comparisons (== != < <= > >=), in / not in with a list, and / or / not, "
    "arithmetic on numbers (+ - * / // %) and parentheses"
)

_COMPARISONS = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_ARITHMETIC = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
#: longest expression accepted: a config value, not a program
MAX_LENGTH = 2000
#: deepest nesting of operations accepted (checking and evaluating recurse once per level)
MAX_DEPTH = 64
#: placeholder identifiers for backtick-quoted column names (user names may not hold double underscores)
_PLACEHOLDER = "__column_{}__"
_NODE_WORDS = {
    ast.Attribute: "attribute access", ast.Call: "function calls", ast.Subscript: "subscripts",
    ast.Lambda: "lambdas", ast.IfExp: "conditional expressions", ast.NamedExpr: "assignments",
    ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions", ast.JoinedStr: "f-strings", ast.FormattedValue: "f-strings",
    ast.Dict: "dictionaries", ast.Set: "sets", ast.Starred: "starred expressions", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "slices",
    ast.List: "a list outside in / not in", ast.Tuple: "a tuple outside in / not in",
}


_OPERATOR_WORDS = {
    ast.Pow: "**", ast.MatMult: "@", ast.BitAnd: "& (write and)", ast.BitOr: "| (write or)",
    ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
}


class ParsedExpression:
    """A checked expression: its syntax tree and the column names it reads."""

    def __init__(self, text: str, tree: ast.Expression, columns: dict[str, str]) -> None:
        self.text = text
        self.tree = tree
        #: identifier in the tree -> column name (itself, or the text between backticks)
        self.columns = columns

    @property
    def column_names(self) -> list[str]:
        return list(dict.fromkeys(self.columns.values()))


def _refuse(key: str, text: str, problem: str) -> ConfigError:
    return ConfigError(f"{key}: {text!r} is not allowed: {problem}; an expression may use {ALLOWED}")


def _replace_backticks(text: str, *, key: str) -> tuple[str, dict[str, str]]:
    """The text with each ```name``` outside quotes replaced by a placeholder identifier."""
    out, names, quote, i = [], {}, None, 0
    while i < len(text):
        char = text[i]
        if quote:
            out.append(char)
            if char == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise _refuse(key, text, "a backtick-quoted column name is not closed")
            name = text[i + 1 : end]
            if not name:
                raise _refuse(key, text, "an empty backtick-quoted column name")
            placeholder = _PLACEHOLDER.format(len(names))
            names[placeholder] = name
            out.append(f" {placeholder} ")
            i = end
        else:
            out.append(char)
        i += 1
    return "".join(out), names


def parse_expression(text: str, *, key: str) -> ParsedExpression:
    """Parse and check ``text`` (the value of config key ``key``); raise :class:`ConfigError` if refused."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{key}: expected a non-empty expression text, got {text!r}; an expression may use {ALLOWED}")
    if len(text) > MAX_LENGTH:
        raise _refuse(key, text[:60] + "...", f"longer than {MAX_LENGTH} characters")
    source, backticked = _replace_backticks(text, key=key)
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as error:
        raise _refuse(key, text, f"not a valid expression ({error.msg})") from None
    except (RecursionError, MemoryError):
        raise _refuse(key, text, f"nested more than {MAX_DEPTH} levels deep") from None
    if _depth(tree.body) > MAX_DEPTH:
        raise _refuse(key, text, f"nested more than {MAX_DEPTH} levels deep")
    columns: dict[str, str] = {}
    _Checker(text=text, key=key, backticked=backticked, columns=columns).check(tree.body)
    return ParsedExpression(text, tree, columns)


def _depth(root: ast.AST) -> int:
    """How deeply ``root``'s tree nests, measured without recursion (a long chain such as 1+1+...+1 nests deep)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


class _Checker:
    """Walks a syntax tree and refuses every node outside the expression language."""

    def __init__(self, *, text: str, key: str, backticked: dict[str, str], columns: dict[str, str]) -> None:
        self.text, self.key, self.backticked, self.columns = text, key, backticked, columns

    def refuse(self, problem: str) -> ConfigError:
        return _refuse(self.key, self.text, problem)

    def check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            if node.id in self.backticked:
                self.columns[node.id] = self.backticked[node.id]
            elif "__" in node.id:
                raise self.refuse(f"names with double underscores ({node.id!r})")
            else:
                self.columns[node.id] = node.id
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (bool, int, float, str)):
                raise self.refuse(f"the constant {node.value!r}")
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self.check(value)
        elif isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Invert):
                raise self.refuse("the operator ~ (write not)")
            self.check(node.operand)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITHMETIC:
                raise self.refuse(f"the operator {_OPERATOR_WORDS.get(type(node.op), type(node.op).__name__)}")
            self.check(node.left)
            self.check(node.right)
        elif isinstance(node, ast.Compare):
            self.check_compare(node)
        else:
            raise self.refuse(_NODE_WORDS.get(type(node), f"{type(node).__name__} syntax"))

    def check_compare(self, node: ast.Compare) -> None:
        self.check(node.left)
        membership = [isinstance(op, (ast.In, ast.NotIn)) for op in node.ops]
        if any(membership) and len(node.ops) > 1:
            raise self.refuse("in / not in inside a chain of comparisons (use parentheses and and)")
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not _is_constant_list(right):
                    raise self.refuse("in / not in needs a list of numbers or strings on its right, e.g. [1, 2]")
            elif type(op) in _COMPARISONS:
                self.check(right)
            else:
                raise self.refuse("'is' comparisons (write == or !=)")


def _is_constant_list(node: ast.AST) -> bool:
    if not isinstance(node, (ast.List, ast.Tuple)):
        return False
    return all(_constant_value(element) is not None for element in node.elts)


def _constant_value(node: ast.AST) -> Any:
    """The number or string of a constant node (a negative number too), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _constant_value(node.operand)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner if isinstance(node.op, ast.USub) else inner
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float, str)):
        return node.value
    return None


def evaluate_expression(
    parsed: ParsedExpression, metadata: pd.DataFrame, *, key: str,
) -> np.ndarray:
    """The value of ``parsed`` on every row of ``metadata``: a numpy array (or a scalar for a constant)."""
    missing = [name for name in parsed.column_names if name not in metadata.columns]
    if missing:
        from .exceptions import closest_first

        raise ConfigError(
            f"{key}: {parsed.text!r} refers to unknown column {missing[0]!r}; metadata columns (closest first): "
            f"{closest_first(missing[0], metadata.columns)}"
        )
    value = _Evaluator(parsed, metadata, key=key).visit(parsed.tree.body)
    return value.to_numpy() if isinstance(value, pd.Series) else np.asarray(value)


class _Evaluator:
    """Evaluates a checked tree on the columns of a table; every value is a pandas Series or a constant."""

    def __init__(self, parsed: ParsedExpression, metadata: pd.DataFrame, *, key: str) -> None:
        self.parsed, self.metadata, self.key = parsed, metadata, key

    def fail(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.key}: {self.parsed.text!r} cannot be evaluated: {problem}")

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            return self.metadata[self.parsed.columns[node.id]].reset_index(drop=True)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BoolOp):
            values = [self._boolean(self.visit(v), "and / or") for v in node.values]
            combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
            result = values[0]
            for value in values[1:]:
                result = combine(result, value)
            return result
        if isinstance(node, ast.UnaryOp):
            operand = self.visit(node.operand)
            if isinstance(node.op, ast.Not):
                value = self._boolean(operand, "not")
                return ~value if isinstance(value, pd.Series) else not value
            number = self._number(operand, "- / +")
            return -number if isinstance(node.op, ast.USub) else number
        if isinstance(node, ast.BinOp):
            left, right = self._number(self.visit(node.left), "arithmetic"), self._number(self.visit(node.right), "arithmetic")
            try:
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    return _ARITHMETIC[type(node.op)](left, right)
            except (ArithmeticError, TypeError, ValueError) as error:
                raise self.fail(f"arithmetic failed ({error})") from None
        if isinstance(node, ast.Compare):
            return self._compare(node)
        raise self.fail(f"unexpected {type(node).__name__}")  # parse_expression refuses every other node

    def _compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        result = None
        for op, right_node in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                options = [_constant_value(e) for e in right_node.elts]
                found = left.isin(options).fillna(False).astype(bool) if isinstance(left, pd.Series) else left in options
                if isinstance(op, ast.NotIn):
                    found = ~found if isinstance(found, pd.Series) else not found
                value, right = found, None
            else:
                right = self.visit(right_node)
                try:
                    value = _COMPARISONS[type(op)](left, right)
                except (TypeError, ValueError, OverflowError) as error:
                    raise self.fail(f"cannot compare these values ({error})") from None
                if isinstance(value, pd.Series):
                    value = value.fillna(False).astype(bool)
            result = value if result is None else operator.and_(result, value)
            left = right
        return result

    def _boolean(self, value: Any, what: str) -> Any:
        if isinstance(value, pd.Series):
            if pd.api.types.is_bool_dtype(value.dtype):
                return value.fillna(False).astype(bool)
            if pd.api.types.is_numeric_dtype(value.dtype) and value.isin([0, 1]).all():
                return value.astype(bool)
            raise self.fail(f"{what} needs true/false values (or a 0/1 column), got a column of {value.dtype}")
        if isinstance(value, bool):
            return value
        raise self.fail(f"{what} needs true/false values, got {value!r}")

    def _number(self, value: Any, what: str) -> Any:
        if isinstance(value, pd.Series):
            if pd.api.types.is_numeric_dtype(value.dtype) and not pd.api.types.is_bool_dtype(value.dtype):
                return value
            raise self.fail(f"{what} needs numbers, got a column of {value.dtype}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        raise self.fail(f"{what} needs numbers, got {value!r}")


def evaluate_boolean_expression(text: str, metadata: pd.DataFrame, *, key: str) -> np.ndarray:
    """Parse, check and evaluate ``text``: one true/false value per row of ``metadata``.

    A 0/1 column named on its own (``is_bad``) counts as true/false.
    """
    values = evaluate_expression(parse_expression(text, key=key), metadata, key=key)
    if values.dtype.kind in "iuf" and values.shape == (len(metadata),) and np.isin(values, (0, 1)).all():
        values = values.astype(bool)
    if values.shape != (len(metadata),) or values.dtype != bool:
        raise ConfigError(
            f"{key}: {text!r} must give one true/false value per spectrum (e.g. 'anomaly_kind != 0'), "
            f"got {_describe(values)}"
        )
    return values


def _describe(values: np.ndarray) -> str:
    if values.shape == ():
        return f"the single value {values.item()!r}"
    return f"values of dtype {values.dtype} and shape {values.shape}"


#: the config keys that hold expressions, per dataset
EXPRESSION_KEYS = ("anomaly_label", "train_selection")


def check_config_expressions(config: dict[str, Any]) -> None:
    """Parse every expression of the config, so a refused one stops the run before any job."""
    for name, dataset in (config.get("datasets") or {}).items():
        for key in EXPRESSION_KEYS:
            if dataset.get(key) is not None:
                parse_expression(dataset[key], key=f"datasets.{name}.{key}")

