"""What a GraphQL document asks of the server, measured before it is validated or run.

Its *shape* (how deep it goes, how many aliases and directives it uses) depends on the
document alone. Its *cost* depends on the variables too, since a list's length is an argument
(`threats(limit: $n)`). The cost model, in units of about one field resolved:

- a root field costs DATABASE (100): its resolver goes to the database (or to Redis);
- any other field costs 1;
- a list of objects multiplies what is selected under it by its length: the argument that
  bounds it (`trend(days:)`, `sourceBreakdown(limit:)`, and `threats(limit:)` for its page's
  `items`), never more than its resolver accepts; a fixed length where there is one
  (`severityBreakdown`: one per severity); ASSUMED_LIST (10) for the others (`indicators`);
- `threats(filter: {search:})` adds SEARCH (1,000): it scans every title and description.

Introspection (`__schema`, `__type`) costs 1 and adds no depth: graphql-core's own
MaxIntrospectionDepthRule bounds it. Each fragment is measured once however often it is
spread (Strawberry's depth and alias limiters walk a fragment again at every spread: twenty
fragments that each spread the one before twice, 200 tokens, take them 2 s; thirty, 40 min).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
    value_from_ast_untyped,
)

from resolvers.dashboard import MAX_SOURCES, MAX_TREND_DAYS
from resolvers.records import Severity
from resolvers.threats import MAX_LIMIT

DATABASE = 100
FIELD = 1
SEARCH = 1_000
ASSUMED_LIST = 10

# The argument that bounds a field's list (for `threats`, its page's `items`), and the
# largest value its resolver accepts: a larger one is refused before any query.
_BOUNDS: dict[tuple[str, str], tuple[str, int]] = {
    ("Query", "threats"): ("limit", MAX_LIMIT),
    ("Query", "trend"): ("days", MAX_TREND_DAYS),
    ("Query", "sourceBreakdown"): ("limit", MAX_SOURCES),
}
_LENGTHS: dict[tuple[str, str], int] = {("Query", "severityBreakdown"): len(Severity)}


@dataclass(frozen=True)
class Shape:
    """The deepest path of fields, and the aliases and directives as executed: a fragment
    counts each time it is spread."""

    depth: int = 0
    aliases: int = 0
    directives: int = 0


def shape(document: DocumentNode) -> Shape:
    """The shape of every operation in `document` together."""
    walk = _ShapeWalk(document)
    depth = aliases = directives = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            found = walk.selection_set(definition.selection_set)
            depth = max(depth, found.depth)
            aliases += found.aliases
            directives += found.directives + len(definition.directives or ())
            variables = definition.variable_definitions or ()
            directives += sum(len(v.directives or ()) for v in variables)
    return Shape(depth, aliases, directives)


def cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None,
) -> tuple[int, bool]:
    """The operation's cost with these variables, and whether a variable changed it."""
    walk = _CostWalk(schema, document, operation, variables or {})
    root = schema.get_root_type(operation.operation)
    return walk.selection_set(operation.selection_set, root, None), walk.read_variables


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


class _ShapeWalk:
    def __init__(self, document: DocumentNode) -> None:
        self.fragments = _fragments(document)
        self.memo: dict[str, Shape] = {}
        self.active: set[str] = set()

    def selection_set(self, node: SelectionSetNode) -> Shape:
        depth = aliases = directives = 0
        for selection in node.selections:
            directives += len(selection.directives or ())
            if isinstance(selection, FieldNode):
                inner = (
                    self.selection_set(selection.selection_set)
                    if selection.selection_set
                    else Shape()
                )
                introspection = selection.name.value in ("__schema", "__type")
                depth = max(depth, 1 if introspection else 1 + inner.depth)
                aliases += inner.aliases + (selection.alias is not None)
            elif isinstance(selection, InlineFragmentNode):
                inner = self.selection_set(selection.selection_set)
                depth = max(depth, inner.depth)
                aliases += inner.aliases
            elif isinstance(selection, FragmentSpreadNode):
                inner = self.fragment(selection.name.value)
                depth = max(depth, inner.depth)
                aliases += inner.aliases
            directives += inner.directives
        return Shape(depth, aliases, directives)

    def fragment(self, name: str) -> Shape:
        found = self.memo.get(name)
        if found is not None:
            return found
        definition = self.fragments.get(name)
        if definition is None or name in self.active:
            return Shape()  # unknown, or a cycle: validation refuses the document
        self.active.add(name)
        inner = self.selection_set(definition.selection_set)
        self.active.discard(name)
        directives = inner.directives + len(definition.directives or ())
        found = Shape(inner.depth, inner.aliases, directives)
        self.memo[name] = found
        return found


class _CostWalk:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.roots = {
            root
            for root in (schema.query_type, schema.mutation_type, schema.subscription_type)
            if root is not None
        }
        self.fragments = _fragments(document)
        defaults = {
            v.variable.name.value: value_from_ast_untyped(v.default_value)
            for v in operation.variable_definitions or ()
            if v.default_value is not None
        }
        self.variables = {**defaults, **variables}
        self.read_variables = False
        # By fragment and by the length of the page it is spread in.
        self.memo: dict[tuple[str, int | None], int] = {}
        self.active: set[str] = set()

    def selection_set(
        self, node: SelectionSetNode, parent: GraphQLNamedType | None, page: int | None
    ) -> int:
        total = 0
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selection_set(selection.selection_set, inner, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value, page)
        return total

    def fragment(self, name: str, page: int | None) -> int:
        found = self.memo.get((name, page))
        if found is not None:
            return found
        definition = self.fragments.get(name)
        if definition is None or name in self.active:
            return 0  # unknown, or a cycle: validation refuses the document
        self.active.add(name)
        parent = self.schema.get_type(definition.type_condition.name.value)
        found = self.selection_set(definition.selection_set, parent, page)
        self.active.discard(name)
        self.memo[(name, page)] = found
        return found

    def field(self, node: FieldNode, parent: GraphQLNamedType | None, page: int | None) -> int:
        name = node.name.value
        fields = (
            parent.fields if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType) else {}
        )
        definition = fields.get(name)
        if definition is None or name.startswith("__"):
            return FIELD  # introspection, bounded by graphql-core; or unknown, refused later
        assert parent is not None
        coordinate = (parent.name, name)
        total = DATABASE if parent in self.roots else FIELD
        if coordinate == ("Query", "threats"):
            search = self.argument(node, definition, "filter")
            total += SEARCH if isinstance(search, dict) and search.get("search") else 0
        if node.selection_set is None:
            return total
        length = _LENGTHS.get(coordinate)
        bound = _BOUNDS.get(coordinate)
        if bound is not None:
            length = _length(self.argument(node, definition, bound[0]), bound[1])
        inner = get_named_type(definition.type)
        if is_list_type(get_nullable_type(definition.type)):
            items = length if length is not None else page if page is not None else ASSUMED_LIST
            return total + items * self.selection_set(node.selection_set, inner, None)
        return total + self.selection_set(node.selection_set, inner, length)

    def argument(self, node: FieldNode, definition: GraphQLField, name: str) -> Any:
        for argument in node.arguments or ():
            if argument.name.value == name:
                self.read_variables = self.read_variables or _mentions_variable(argument.value)
                return value_from_ast_untyped(argument.value, self.variables)
        declared = definition.args.get(name)
        return declared.default_value if declared is not None else None


def _length(value: Any, maximum: int) -> int:
    """A list length from an argument; one that is not an int counts at its maximum (the
    variable's coercion refuses it before any resolver runs)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, min(value, maximum))
    return maximum


def _mentions_variable(node: ValueNode) -> bool:
    if isinstance(node, VariableNode):
        return True
    if isinstance(node, ListValueNode):
        return any(_mentions_variable(v) for v in node.values)
    if isinstance(node, ObjectValueNode):
        return any(_mentions_variable(f.value) for f in node.fields)
    return False
